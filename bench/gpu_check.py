"""GPU check: rwpipe's stages on one GPU, through their library entry points, with a model of a
real architecture and random weights (nothing is downloaded).

    python bench/gpu_check.py --size 1.5b --other-work none      # on the H200 (sized for < 8 min)
    python bench/gpu_check.py --size 0.5b --peak-tflops 989
    python bench/gpu_check.py --size tiny --device cpu --results /tmp/gpu.json   # CPU smoke

What runs, in order, each through `rwpipe.<stage>.run(cfg, base, ...)` on params built from the
shipped params.yaml (so the strict config checks apply), the engine forced to transformers
(`engine.backend: hf`; no vLLM) and `dtype: auto` everywhere (bfloat16 on CUDA):

1. a Qwen2ForCausalLM with Qwen2-0.5B or Qwen2-1.5B shapes (`--size`; tiny: hidden 64,
   2 layers), random weights (seed 0), the vocabulary and chat template of `--tokenizer`,
   saved as a model directory (bf16 on CUDA, float32 on CPU) with the card `rwpipe model` writes;
2. `prepare` (synthetic problems), then `rollout`: tokens/s from the artifact's stats (random
   weights rarely emit EOS, so nearly every sequence runs to max_new_tokens);
3. `annotate` with Monte-Carlo labels (`mc`), then `train_prm`: full fine-tuning on them,
   tokens/s from its metrics (real tokens over the optimizer-step wall time, first step
   included) and MFU = tokens/s * (6 * N + 12 * layers * hidden * S) / peak, where N is the
   non-embedding parameter count (the token-classification PRM runs no LM head and an embedding
   is a lookup), S the mean real tokens per training sequence (PaLM's attention term) and peak
   `--peak-tflops` (dense bf16; 989 for an H200 SXM); null on CPU;
4. one `rl` step (verifiable reward only): its wall seconds and the loop's step metrics;
5. every artifact read back (`read_artifact`) and every model directory checked.

Results: `--results` (bench/results/gpu.json), flat keys with units in their names plus the GPU
and the machine facts (bench/machine.py).
"""

import argparse
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import machine
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network on the device: fail, never wait
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "gpu.json"
TOKENIZER = ROOT / "data" / "models" / "smollm2-135m-instruct"


@dataclass(frozen=True)
class Shape:
    """A Qwen2 decoder's shape (the vocabulary comes from the tokenizer)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    like: str  # what the shape copies


@dataclass(frozen=True)
class Workload:
    """How much each stage does."""

    problems: int  # train-split problems: rolled out, labelled, trained on
    samples: int  # rollout samples per problem
    max_new_tokens: int
    mc_k: int  # annotate: completions per step prefix
    mc_max_new_tokens: int
    train_epochs: int
    rl_prompts: int
    rl_group: int
    rl_max_new_tokens: int


GPU_WORK = Workload(64, 4, 256, 2, 32, 2, 8, 4, 128)
SIZES: dict[str, tuple[Shape, Workload]] = {
    "tiny": (Shape(64, 256, 2, 4, 2, "a 2-layer toy"), Workload(4, 2, 16, 2, 4, 1, 2, 2, 8)),
    "0.5b": (Shape(896, 4864, 24, 14, 2, "Qwen2-0.5B"), GPU_WORK),
    "1.5b": (Shape(1536, 8960, 28, 12, 2, "Qwen2-1.5B"), GPU_WORK),
}


def build_model(size: str, tokenizer_dir: Path, out: Path, device: Any) -> dict[str, Any]:
    """Save a random-weight Qwen2ForCausalLM of `size` with `tokenizer_dir`'s tokenizer to
    `out`, with the card `rwpipe model` writes; returns the card."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rwpipe import artifacts
    from rwpipe.model.materialize import INFO_FILE

    shape = SIZES[size][0]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=shape.hidden,
        intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with artifacts.atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card = {
            "source": f"bench/gpu_check.py --size {size} (shapes of {shape.like}), random weights",
            "kind": "random",
            "revision": None,
            "architecture": type(model).__name__,
            "num_parameters": model.num_parameters(),
            "dtype": str(model.dtype).removeprefix("torch."),
            "files": sorted(p.name for p in tmp.iterdir()),
            "weights": "random (normal init, seed 0): not a trained model",
            "tokenizer": str(tokenizer_dir),
        }
        artifacts.write_json(card, tmp / INFO_FILE)
    return card


def write_params(path: Path, args: argparse.Namespace, work: Workload) -> Path:
    """The shipped params.yaml with what this check needs laid over it, written to `path`."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["base"] |= {"device": args.device, "seed": 0}
    p["engine"]["backend"] = "hf"
    p["prepare"] |= {"train": "synthetic", "eval": "synthetic", "n_train": work.problems,
                     "n_eval": 4}  # fmt: skip
    p["rollout"]["splits"] = ["train"]
    p["rollout"]["sampling"] |= {"n": work.samples, "max_new_tokens": work.max_new_tokens}
    p["annotate"] |= {"method": "mc", "splits": ["train"], "select": "all", "budget_tokens": 0}
    p["annotate"]["completion"] |= {"k": work.mc_k, "k_first": work.mc_k,
                                    "max_new_tokens": work.mc_max_new_tokens}  # fmt: skip
    prm = p["train_prm"]
    prm |= {"kind": "discriminative", "dtype": "auto"}
    prm["lora"]["enabled"] = False
    prm["optim"] |= {"epochs": work.train_epochs, "lr": 1.0e-5, "batch_size": args.train_batch_size}
    rl = p["rl"]
    rl |= {"steps": 1, "prompts_per_step": work.rl_prompts, "group_size": work.rl_group,
           "dtype": "auto"}  # fmt: skip
    rl["rewards"] |= {"verifiable": 1.0, "orm": 0.0, "prm": 0.0, "implicit_prm": 0.0,
                      "length_penalty": 0.0}  # fmt: skip
    rl["sampling"]["max_new_tokens"] = work.rl_max_new_tokens
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 2)


def generate_stages(params: Path, base: Any, model: Path, work: Path) -> dict[str, Any]:
    """prepare, rollout and annotate; their throughput as the artifacts record it."""
    from rwpipe import annotate, prepare, rollout
    from rwpipe.artifacts import artifact_metadata, read_artifact
    from rwpipe.config import load_section

    problems, rollouts, labels = (work / f"{n}.arrow" for n in ("problems", "rollouts", "labels"))
    prepare.run(load_section(params, "prepare"), base, out=problems)
    _, rollout_s = timed(rollout.run, load_section(params, "rollout"), base, problems=problems,
                         model_dir=model, out=rollouts)  # fmt: skip
    stats = artifact_metadata(read_artifact(rollouts, "rollouts"))["stats"]
    _, annotate_s = timed(annotate.run, load_section(params, "annotate"), base,
                          rollouts=rollouts, completer=model, out=labels)  # fmt: skip
    mc = artifact_metadata(read_artifact(labels, "labels"))["stats"]
    return {
        "rollout_sequences": stats["rows"],
        "rollout_tokens": stats["tokens"],
        "rollout_tokens_per_sequence": round(stats["tokens"] / max(stats["rows"], 1), 1),
        "rollout_generate_seconds": stats["generate_seconds"],
        "rollout_tokens_per_s": stats["tokens_per_s"],
        "rollout_dtype": stats["dtype"],
        "rollout_stage_seconds": rollout_s,
        "annotate_completions": mc["completions"],
        "annotate_step_labels": mc["step_labels"],
        "annotate_tokens_per_s": mc["tokens_per_s"],
        "annotate_dtype": mc.get("dtype"),
        "annotate_stage_seconds": annotate_s,
    }


def train_prm(params: Path, base: Any, model: Path, work: Path) -> dict[str, Any]:
    """train_prm on the labels: its throughput as its metrics record it."""
    from rwpipe import train
    from rwpipe.config import load_section

    cfg = load_section(params, "train_prm")
    metrics, seconds = timed(train.run, cfg, base, labels=work / "labels.arrow",
                             base_model=model, out=work / "prm",
                             report_dir=work / "prm.report")  # fmt: skip
    return {
        "train_prm_items": metrics["train_items"],
        "train_prm_epochs": cfg.optim.epochs,
        "train_prm_batch_size": cfg.optim.batch_size,
        "train_prm_optimizer_steps": metrics["steps"],
        "train_prm_tokens": metrics["train_tokens"],
        "train_prm_seconds": metrics["train_seconds"],
        "train_prm_tokens_per_s": metrics["train_tokens_per_s"],
        "train_prm_dtype": metrics["dtype"],
        "train_prm_stage_seconds": seconds,
    }


def rl_step(params: Path, base: Any, model: Path, work: Path) -> dict[str, Any]:
    """One rl step with the verifiable reward: wall seconds and the loop's own metrics."""
    from rwpipe import rl
    from rwpipe.config import load_section

    cfg = load_section(params, "rl")
    metrics, seconds = timed(rl.run, cfg, base, problems=work / "problems.arrow", policy=model,
                             out=work / "policy-rl", report_dir=work / "rl.report")  # fmt: skip
    return {
        "rl_sequences": cfg.prompts_per_step * cfg.group_size,
        "rl_max_new_tokens": cfg.sampling.max_new_tokens,
        "rl_lora": cfg.lora.enabled,
        "rl_stage_seconds": seconds,
        "rl_step_seconds": metrics["seconds"],
        "rl_generated_tokens": metrics["generated_tokens"],
        "rl_generate_fraction": metrics.get("generate_fraction"),
        "rl_sync_seconds": metrics.get("sync_seconds_last"),
        "rl_rss_gib_max": metrics.get("rss_gib_max"),
        "rl_dtype": metrics["dtype"],
    }


def mfu(results: dict[str, Any], shape: Shape, args: argparse.Namespace, cuda: bool) -> dict:
    """Model FLOPs utilisation of train_prm (see the module docstring); null off CUDA."""
    r = results
    seq_len = r["train_prm_tokens"] / (r["train_prm_items"] * r["train_prm_epochs"])
    flops_per_token = 6 * r["params_non_embedding"] + 12 * shape.layers * shape.hidden * seq_len
    value = r["train_prm_tokens_per_s"] * flops_per_token / (args.peak_tflops * 1e12)
    return {
        "train_prm_mean_seq_len_tokens": round(seq_len, 1),
        "train_prm_flops_per_token": round(flops_per_token),
        "train_prm_mfu": round(value, 4) if cuda else None,
        "train_prm_mfu_formula": "tokens/s * (6 * params_non_embedding + 12 * layers * hidden "
        "* mean_seq_len) / (peak_tflops * 1e12)",
        "peak_tflops": args.peak_tflops,
    }


def check_artifacts(work: Path) -> bool:
    """Whether every artifact reads back and every model directory passes the stage check."""
    from rwpipe.artifacts import check_model_dir, read_artifact
    from rwpipe.errors import ArtifactError, InputError

    try:
        for name in ("problems", "rollouts", "labels"):
            read_artifact(work / f"{name}.arrow", name)
        for model in ("model", "prm", "policy-rl"):
            check_model_dir(work / model)
    except (ArtifactError, InputError) as exc:
        print(f"artifact check failed: {exc}")
        return False
    return True


def gpu_facts(device: Any) -> dict[str, Any]:
    """The GPU, torch and CUDA; the GPU keys are null off CUDA."""
    import torch

    facts: dict[str, Any] = {"device": device.type, "torch_cuda_version": torch.version.cuda}
    if device.type != "cuda":
        keys = ("gpu_name", "gpu_capability", "gpu_memory_gib", "gpu_peak_allocated_gib")
        return facts | dict.fromkeys(keys)
    props = torch.cuda.get_device_properties(device)
    major, minor = torch.cuda.get_device_capability(device)
    return facts | {
        "gpu_name": torch.cuda.get_device_name(device),
        "gpu_capability": f"{major}.{minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "gpu_peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
    }


def model_facts(card: dict[str, Any], model_dir: Path, size: str) -> dict[str, Any]:
    """Parameter counts of the random model: all, and without the (tied) embedding."""
    config = yaml.safe_load((model_dir / "config.json").read_text())  # JSON is YAML
    shape = SIZES[size][0]
    return {
        "size": size,
        "architecture": card["architecture"],
        "shape_like": shape.like,
        "vocab_size": config["vocab_size"],
        "params": card["num_parameters"],
        "params_non_embedding": card["num_parameters"] - config["vocab_size"] * shape.hidden,
        "model_dtype": card["dtype"],
    }


def summary(r: dict[str, Any]) -> str:
    mfu_text = "n/a (not CUDA)" if r["train_prm_mfu"] is None else f"{r['train_prm_mfu']:.1%}"
    return "\n".join([
        f"gpu check: {r['size']}, {r['params'] / 1e6:.1f}M params, on "
        f"{r['gpu_name'] or r['device']}",
        f"  rollout    {r['rollout_tokens_per_s']:>10.1f} tokens/s  ({r['rollout_dtype']}, "
        f"{r['rollout_sequences']} x {r['rollout_tokens_per_sequence']} tokens)",
        f"  annotate   {r['annotate_tokens_per_s']:>10.1f} tokens/s  (mc, "
        f"{r['annotate_completions']} completions)",
        f"  train_prm  {r['train_prm_tokens_per_s']:>10.1f} tokens/s  ({r['train_prm_dtype']}, "
        f"MFU {mfu_text})",
        f"  rl step    {r['rl_step_seconds']:>10.1f} s         ({r['rl_sequences']} sequences)",
        f"  artifacts valid: {r['artifacts_valid']}",
    ])  # fmt: skip


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER,
                    help="a directory with a tokenizer and a chat template")  # fmt: skip
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="peak dense bf16 TFLOP/s of the GPU, for MFU (H200 SXM: 989)")  # fmt: skip
    ap.add_argument("--train-batch-size", type=int, default=8, help="train_prm sequences per step")
    ap.add_argument("--work", type=Path, help="an empty or new directory (default: a temp one)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (overwritten)")
    machine.add_arguments(ap)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    started = machine.start(args.other_work)
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        raise SystemExit(f"--work {args.work}: not empty (a rerun would resume, not measure)")
    from rwpipe.config import load_section
    from rwpipe.runtime import pick_device

    device = pick_device(args.device)
    shape, work = SIZES[args.size]
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        args.work.mkdir(parents=True, exist_ok=True)
        params = write_params(args.work / "params.yaml", args, work)
        base = load_section(params, "base")
        card, build_s = timed(build_model, args.size, args.tokenizer, args.work / "model", device)
        results = model_facts(card, args.work / "model", args.size)
        results["build_model_seconds"] = build_s
        results |= generate_stages(params, base, args.work / "model", args.work)
        results |= train_prm(params, base, args.work / "model", args.work)
        results |= mfu(results, shape, args, device.type == "cuda")
        results |= rl_step(params, base, args.work / "model", args.work)
        results["artifacts_valid"] = check_artifacts(args.work)
    results |= gpu_facts(device)
    results = machine.write_results(args.results, results, started)
    print(summary(results))
    print(f"results: {args.results}")


if __name__ == "__main__":
    main()
