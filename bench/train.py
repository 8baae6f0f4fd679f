"""PRM training throughput: rwpipe's trainer against TRL's PRMTrainer, same data, model and
hyperparameters, one run.

    python bench/train.py [--model DIR] [--solutions 32] [--batch-size 4] [--epochs 1]

Data: the first `--solutions` ProcessBench GSM8K solutions (../shared/data/processbench), each
step labelled 1 before the human first-error index, 0 at it, and the steps after it dropped
(supervision up to the first error); correct solutions keep all steps labelled 1. Model: the
embedded default SmolLM2-135M-Instruct, full fine-tuning, float32 (TRL's default bf16 is ~20x
slower on this CPU, so both run fp32), AdamW lr 2e-5, linear schedule with 10% warm-up, batch
`--batch-size`, max length 512, one epoch. TRL 1.13.0 (`trl.experimental.prm`, the last release
with PRMTrainer) is a benchmark-only dependency: `pip install --no-deps trl==1.13.0`.

Each trainer runs in its own subprocess (peak RSS from wait4). tokens/s counts real
(non-padding) tokens over the training wall time (data preparation and model loading excluded).
Results: bench/results/train.json, with the machine facts (bench/machine.py).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

RESULTS = Path(__file__).parent / "results" / "train.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MARK = "RWBENCH "
LR, WARMUP, MAX_LENGTH, SEPARATOR = 2e-5, 0.1, 512, "\n"


def records(n: int) -> list[dict]:
    """ProcessBench GSM8K solutions as (prompt, steps, per-step labels)."""
    out = []
    for x in json.loads((SHARED / "processbench" / "gsm8k.json").read_text())[:n]:
        steps = x["steps"] if x["label"] < 0 else x["steps"][: x["label"] + 1]
        labels = [x["label"] < 0 or i < x["label"] for i in range(len(steps))]
        out.append({"prompt": x["problem"], "completions": steps, "labels": labels})
    return out


def child_rwpipe(args: argparse.Namespace) -> dict:
    import torch

    from rwpipe.config import LoraConfig, OptimConfig
    from rwpipe.train.backbone import load_backbone
    from rwpipe.train.data import Example, encode_solution
    from rwpipe.train.loop import Checkpointer, fit

    torch.manual_seed(0)
    backbone = load_backbone(
        args.model, "prm", device=torch.device("cpu"), dtype=torch.float32,
        lora=LoraConfig(enabled=False), step_tag=SEPARATOR,
    )  # fmt: skip
    bos = backbone.tokenizer.bos_token or ""
    examples = []
    for r in records(args.solutions):
        enc = encode_solution(
            backbone.tokenizer, bos + r["prompt"], r["completions"], SEPARATOR, MAX_LENGTH
        )
        targets = [float(t) for t in r["labels"][: len(enc.step_ends)]]
        examples.append(Example(enc.input_ids, enc.prompt_len, enc.step_ends, targets))
    optim = OptimConfig(
        epochs=args.epochs, lr=LR, warmup_ratio=WARMUP, batch_size=args.batch_size,
        max_length=MAX_LENGTH, checkpoint_every=10_000,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        state = fit(
            backbone, examples, [len(e) for e in examples], objective="step", optim=optim,
            seed=0, checkpointer=Checkpointer(Path(tmp), "bench"),
        )  # fmt: skip
        seconds = time.perf_counter() - start
    return {
        "tokens": sum(len(e) for e in examples) * args.epochs,
        "seconds": seconds,
        "losses": [h["loss"] for h in state.history],
    }


def child_trl(args: argparse.Namespace) -> dict:
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    import torch
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.prm import PRMConfig, PRMTrainer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=2, dtype=torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, _args, _state, _control, logs=None, **_kw):
            if logs and "loss" in logs:
                losses.append(round(float(logs["loss"]), 6))

    with tempfile.TemporaryDirectory() as tmp:
        config = PRMConfig(
            output_dir=tmp, per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs, learning_rate=LR,
            warmup_steps=int(WARMUP * math.ceil(args.solutions / args.batch_size) * args.epochs),
            lr_scheduler_type="linear", bf16=False, fp16=False, use_cpu=True,
            max_length=MAX_LENGTH, max_completion_length=None, step_separator=SEPARATOR,
            logging_steps=1, save_strategy="no", report_to=[], seed=0,
            dataloader_num_workers=0, dataset_num_proc=None,
        )  # fmt: skip
        trainer = PRMTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(records(args.solutions)),
            processing_class=tokenizer, callbacks=[Losses()],
        )  # fmt: skip
        tokens = sum(len(x) for x in trainer.train_dataset["input_ids"]) * args.epochs
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "losses": losses}


def run_child(args: argparse.Namespace, which: str) -> dict:
    cmd = [
        sys.executable, __file__, "--child", which, "--model", args.model,
        "--solutions", str(args.solutions), "--batch-size", str(args.batch_size),
        "--epochs", str(args.epochs),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{which} failed")
    result = json.loads(next(x for x in lines if x.startswith(MARK))[len(MARK) :])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=os.environ.get("RWPIPE_TEST_MODEL", "data/models/smollm2-135m-instruct")
    )
    parser.add_argument("--solutions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    machine.add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        fn = {"rwpipe": child_rwpipe, "trl": child_trl}[args.child]
        print(MARK + json.dumps(fn(args)), flush=True)
        return
    started = machine.start(args.other_work)
    ours, trl = run_child(args, "rwpipe"), run_child(args, "trl")
    out = {"solutions": args.solutions, "batch_size": args.batch_size, "epochs": args.epochs}
    for name, r in (("rwpipe", ours), ("trl", trl)):
        out |= {
            f"{name}_real_tokens": r["tokens"],
            f"{name}_seconds": round(r["seconds"], 1),
            f"{name}_real_tokens_per_s": round(r["tokens"] / r["seconds"], 1),
            f"{name}_peak_rss_mib": round(r["peak_rss_mib"]),
            f"{name}_first_loss": r["losses"][0] if r["losses"] else None,
            f"{name}_last_loss": r["losses"][-1] if r["losses"] else None,
            f"{name}_steps": len(r["losses"]),
        }
    out["ratio_tokens_per_s_rwpipe_over_trl"] = round(
        out["rwpipe_real_tokens_per_s"] / out["trl_real_tokens_per_s"], 2
    )
    out["rwpipe_losses"], out["trl_losses"] = ours["losses"], trl["losses"]
    out = machine.write_results(args.out, out, started)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
