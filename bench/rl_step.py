"""One RL update (`rwpipe.rl.update.train_step`) on the real policy, timed for this tree and
for an earlier commit in the same run: the training part of an RL step, without sampling.

A fixed batch the size of the default run's steps (6 prompts x 4 completions, chat-templated
synthetic questions, completion lengths drawn like the default run's: 20-96 tokens) goes
through `train_step` with the LoRA policy and AdamW, `--repeats` times after one warm-up;
the two trees alternate, each in its own process, so that drift on the machine falls on both.
The first update's loss and gradient norm are recorded for each tree: the same batch from the
same weights must give the same update (up to summation order).

    python bench/rl_step.py --model data/models/smollm2-135m-instruct --ref HEAD~1
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import machine  # noqa: E402


def worker(model: str, dtype: str, repeats: int, seed: int) -> dict:
    """Time `train_step` with the `rwpipe` on sys.path; returns seconds and the first update."""
    import torch

    from rwpipe.backends import Completion
    from rwpipe.config import RLConfig, load_section
    from rwpipe.prepare.synthetic import generate_synthetic
    from rwpipe.rl.policy import load_policy_model
    from rwpipe.rl.update import train_step
    from rwpipe.runtime import resolve_dtype

    torch.manual_seed(seed)
    cfg = load_section("params.yaml", "rl", RLConfig)  # the tree's own defaults
    torch_dtype = resolve_dtype(dtype, torch.device("cpu"))
    policy = load_policy_model(model, cfg, torch.device("cpu"), torch_dtype)
    tok = policy.tokenizer
    rng = random.Random(seed)
    questions = [r["question"] for r in generate_synthetic(6, seed, ("add", "mul"), "train")]
    prompts, completions, advantages = [], [], []
    for q in questions:
        text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                       add_generation_prompt=True)  # fmt: skip
        ids = tok.encode(text, add_special_tokens=False)
        for _ in range(cfg.group_size):
            n = rng.randint(20, cfg.sampling.max_new_tokens)
            toks = tuple(rng.randrange(1000, 40000) for _ in range(n))
            prompts.append(ids)
            completions.append(Completion("", toks, (), "length"))
            a = rng.choice((-1.0, 1.0)) * rng.random()
            advantages.append([a] * n)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    seconds, first = [], None
    for i in range(repeats + 1):
        start = time.perf_counter()
        stats = train_step(policy, optimizer, scheduler, cfg, prompts, completions, advantages)
        if i:
            seconds.append(time.perf_counter() - start)
        else:
            first = stats
    return {
        "seconds": seconds,
        "loss": first["loss"],
        "grad_norm": first["grad_norm"],
        "dtype": str(torch_dtype).removeprefix("torch."),
        "tokens": sum(len(p) + len(c.token_ids) for p, c in zip(prompts, completions, strict=True)),
    }


def run_tree(tree: Path, args: argparse.Namespace) -> dict:
    """One worker process on `tree`'s rwpipe."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--dtype", args.dtype,
           "--repeats", str(args.repeats)]  # fmt: skip
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"worker on {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="data/models/smollm2-135m-instruct")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--ref", default="HEAD~1", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two trees")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "rl_step.json")
    machine.add_arguments(parser)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    args.model = str(Path(args.model).resolve())
    if args.worker:
        print(json.dumps(worker(args.model, args.dtype, args.repeats, 0)))
        return
    started = machine.start(args.other_work)
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(before), args.ref],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            git = ["git", "rev-parse", "--short", args.ref]
            commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout.strip()  # fmt: skip
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                for name, tree in (("before", before), ("after", ROOT)):
                    runs[name].append(run_tree(tree, args))
                    print(name, runs[name][-1], file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                           check=False)  # fmt: skip
    out = {"before_commit": commit, "dtype": runs["after"][0]["dtype"],
           "batch_sequences": 24, "batch_tokens": runs["after"][0]["tokens"]}  # fmt: skip
    for name, rs in runs.items():
        secs = [s for r in rs for s in r["seconds"]]
        out[f"{name}_step_s_median"] = round(statistics.median(secs), 3)
        out[f"{name}_step_s_min"] = round(min(secs), 3)
        out[f"{name}_first_loss"] = round(rs[0]["loss"], 6)
        out[f"{name}_first_grad_norm"] = round(rs[0]["grad_norm"], 6)
    out["speedup_median"] = round(out["before_step_s_median"] / out["after_step_s_median"], 2)
    out = machine.write_results(args.out, out, started)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
