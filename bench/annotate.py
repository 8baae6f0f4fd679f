"""Step-label cost and quality: OmegaPRM against Math-Shepherd MC, prefix caching, ProcessBench.

    python bench/annotate.py [--model DIR] [--problems 16] [--n 4] [--k 4] [--processbench 24]

Everything runs on the real default model through vLLM (in-process CPU engine), each labelling
run in its own subprocess so that no run inherits another's prefix cache:

1. Rollouts: `--n` samples of `--problems` synthetic train problems (seeded, 192 tokens max).
   Then the same rollouts are labelled by `mc` (Math-Shepherd, k completions per prefix, correct
   rollouts inferred, as OmegaPRM infers them) and by `omegaprm` (binary search, k_first = k/2
   early stop). Reported: generated tokens and wall time per rollout for each, their ratio,
   and on the incorrect rollouts both labelled, how often both pick the same first wrong step.
2. `mc` again with vLLM's prefix caching off: wall-time ratio off / on.
3. ProcessBench (../shared/data/processbench/gsm8k.json): a seeded sample, half with a human
   first-error index and half judged correct, labelled by mc and omegaprm with the default
   model as completer; each predicts the first wrong step (-1: none). Reported: accuracy on the
   erroneous and on the correct solutions, ProcessBench F1 (their harmonic mean), each with a
   95% bootstrap interval. Gold answers come from GSM8K test (joined on the problem text).

Results go to bench/results/annotate.json as flat keys with units, with the machine facts
(bench/machine.py).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine

RESULTS = Path(__file__).parent / "results" / "annotate.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MARK = "RWBENCH "


def _engine(model: str, caching: bool = True):
    from rwpipe.backends import load_generator

    return load_generator(
        model, "vllm", device="cpu", seed=0, kv_cache_gib=2, enable_prefix_caching=caching
    )


def child_rollouts(args: argparse.Namespace) -> dict:
    """Sample the rollouts every labelling run shares; write them to args.rollouts."""
    import pyarrow as pa

    from rwpipe import artifacts
    from rwpipe.config import PrepareConfig, RolloutConfig, SamplingConfig
    from rwpipe.prepare import build_problems
    from rwpipe.rollout import run_rollout, select_problems

    rows, _ = build_problems(PrepareConfig(n_train=args.problems, n_eval=1), seed=0)
    table = artifacts.validate(pa.Table.from_pylist(rows), "problems", "bench")
    problems = select_problems(table, ("train",), "bench")
    cfg = RolloutConfig(
        splits=("train",),
        sampling=SamplingConfig(n=args.n, temperature=0.8, max_new_tokens=192),
        shard_size=args.problems,
    )
    generator = _engine(args.model)
    store = artifacts.ShardStore(args.rollouts, "rollouts", {"bench": "annotate"})
    n, stats = run_rollout(problems, generator, cfg, seed=0, store=store)
    store.finish(n, section="rollout", config=cfg, stats=stats)
    generator.close()
    return stats


def child_label(args: argparse.Namespace) -> dict:
    """Label args.rollouts with args.method; per-row first errors, tokens, and wall time."""
    from rwpipe import artifacts
    from rwpipe.annotate import run_annotate
    from rwpipe.config import AnnotateConfig, CompletionConfig

    table = artifacts.read_artifact(args.rollouts, "rollouts")
    cfg = AnnotateConfig(
        method=args.method,
        select="incorrect",
        completion=CompletionConfig(k=args.k, k_first=max(1, args.k // 2), max_new_tokens=128),
        shard_size=args.problems,  # one shard: every prefix of a round in one batch
    )
    generator = _engine(args.model, caching=args.caching == "on")
    with tempfile.TemporaryDirectory() as tmp:
        store = artifacts.ShardStore(Path(tmp) / "labels.arrow", "labels", {"b": 1})
        start = time.perf_counter()
        n, stats = run_annotate(table, generator, cfg, seed=0, store=store)
        seconds = time.perf_counter() - start
        labels = store.finish(n, section="annotate", config=cfg, stats=stats).to_pylist()
    generator.close()
    return {
        "seconds": seconds,
        "stats": stats,
        "rows": [
            {k: r[k] for k in ("problem_id", "sample_idx", "status", "first_error", "tokens")}
            | {"outcome": r["outcome"]}
            for r in labels
        ],
    }


def processbench_sample(size: int, seed: int = 0) -> list[dict]:
    """A seeded sample of ProcessBench GSM8K, half erroneous, half correct, with gold answers."""
    from rwpipe.prepare.contamination import normalize_text
    from rwpipe.prepare.loaders import _split_gsm8k

    gold = {}
    for line in (SHARED / "gsm8k" / "test.jsonl").read_text().splitlines():
        record = json.loads(line)
        gold[normalize_text(record["question"])] = _split_gsm8k(record["answer"])[1]
    items = [
        x | {"gold": gold[normalize_text(x["problem"])]}
        for x in json.loads((SHARED / "processbench" / "gsm8k.json").read_text())
        if gold.get(normalize_text(x["problem"]))
    ]
    rng = random.Random(seed)
    wrong = [x for x in items if x["label"] >= 0]
    right = [x for x in items if x["label"] < 0]
    return rng.sample(wrong, size - size // 2) + rng.sample(right, size // 2)


def child_processbench(args: argparse.Namespace) -> dict:
    """Label a ProcessBench sample with both methods; predictions against the human labels."""
    from rwpipe.annotate.estimate import MCEstimator
    from rwpipe.annotate.methods import math_shepherd, omegaprm
    from rwpipe.steps import Solution
    from rwpipe.verify import VerifierPool

    items = processbench_sample(args.processbench)
    generator = _engine(args.model)
    out: dict[str, Any] = {"labels": [x["label"] for x in items]}
    with VerifierPool() as verifier:
        for method in ("mc", "omegaprm"):
            solutions = [
                Solution(
                    question=x["problem"],
                    index=i,
                    problem_id=x["id"],
                    prompt=generator.chat_prompt(x["problem"]),
                    steps=[s + "\n\n" for s in x["steps"][:-1]] + [x["steps"][-1]],
                    gold=x["gold"],
                    outcome=int(x["final_answer_correct"]),
                    finished=True,
                )
                for i, x in enumerate(items)
            ]
            estimator = MCEstimator(
                generator,
                verifier,
                temperature=0.8,
                top_p=1.0,
                max_new_tokens=args.pb_max_new_tokens,
                seed=0,
            )
            start = time.perf_counter()
            if method == "mc":
                labels = math_shepherd(solutions, estimator, k=args.k, select="all")
            else:
                labels = omegaprm(solutions, estimator, k=args.k, k_first=max(1, args.k // 2))
            out[method] = {
                "seconds": time.perf_counter() - start,
                "tokens": sum(c.tokens for c in estimator.costs.values()),
                # too_hard: no completion from the bare question reached the answer, so no
                # prefix is known good: read as "wrong from the first step".
                "pred": [0 if lab.first_error is None else lab.first_error for lab in labels],
                "too_hard": sum(lab.status == "too_hard" for lab in labels),
            }
    generator.close()
    return out


def processbench_scores(labels: list[int], pred: list[int]) -> dict[str, float]:
    """ProcessBench accuracy on erroneous / correct solutions and F1, with 95% bootstrap
    intervals (resampling solutions)."""
    from rwpipe.eval.metrics import processbench
    from rwpipe.train.metrics import bootstrap_ci

    out = {}
    for name, value in processbench(pred, labels).items():
        lo, hi = bootstrap_ci(lambda p, y, k=name: processbench(p, y)[k], pred, labels, draws=2000)
        out |= {
            name: round(value, 3),
            f"{name}_ci95_lo": round(lo, 3),
            f"{name}_ci95_hi": round(hi, 3),
        }
    return out


def run_child(args: argparse.Namespace, mode: str, **extra: Any) -> dict:
    cmd = [sys.executable, __file__, "--child", mode]
    for key, value in (vars(args) | extra).items():
        if key not in ("child", "out") and value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} {extra}: exit {proc.returncode}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARK))
    return json.loads(line[len(MARK) :])


def compare(mc: dict, omega: dict, mc_off: dict) -> dict[str, Any]:
    """Cost and agreement of the two methods on the same rollouts."""
    rows = len(mc["rows"])
    both = [
        (a, b)
        for a, b in zip(mc["rows"], omega["rows"], strict=True)
        if a["status"] == b["status"] == "labelled"
    ]
    agree = sum(a["first_error"] == b["first_error"] for a, b in both)
    incorrect = sum(r["outcome"] == 0 for r in mc["rows"])
    return (
        {
            "rollouts": rows,
            "incorrect_rollouts": incorrect,
            "searched_rollouts_both": len(both),
            "omegaprm_too_hard_rollouts": sum(r["status"] == "too_hard" for r in omega["rows"]),
            "mc_tokens": mc["stats"]["tokens"],
            "omegaprm_tokens": omega["stats"]["tokens"],
            "mc_tokens_per_rollout": round(mc["stats"]["tokens"] / rows, 1),
            "omegaprm_tokens_per_rollout": round(omega["stats"]["tokens"] / rows, 1),
            "ratio_tokens_omegaprm_over_mc": round(
                omega["stats"]["tokens"] / max(mc["stats"]["tokens"], 1), 3
            ),
            "mc_seconds_per_rollout": round(mc["seconds"] / rows, 2),
            "omegaprm_seconds_per_rollout": round(omega["seconds"] / rows, 2),
            "first_error_agreement": round(agree / len(both), 3) if both else None,
            "mc_tokens_per_sampled_step": mc["stats"]["tokens_per_sampled_step"],
            "omegaprm_tokens_per_sampled_step": omega["stats"]["tokens_per_sampled_step"],
            "mc_seconds_prefix_cache_on": round(mc["seconds"], 1),
            "mc_seconds_prefix_cache_off": round(mc_off["seconds"], 1),
            "ratio_seconds_cache_off_over_on": round(mc_off["seconds"] / mc["seconds"], 2),
            "mc_tokens_prefix_cache_off": mc_off["stats"]["tokens"],
        }
        | _unit_costs("mc", mc)
        | _unit_costs("omegaprm", omega)
    )


def _unit_costs(name: str, run: dict) -> dict[str, Any]:
    """What one unit of output cost: tokens and seconds per rollout that got step labels
    (status labelled: searched or sampled, not inferred or too hard) and per first-error
    decision (a labelled incorrect rollout whose first wrong step was located)."""
    labelled = [r for r in run["rows"] if r["status"] == "labelled"]
    decided = [r for r in labelled if r["first_error"] is not None and r["first_error"] >= 0]
    tokens = run["stats"]["tokens"]
    out: dict[str, Any] = {
        f"{name}_labelled_rollouts": len(labelled),
        f"{name}_first_error_decisions": len(decided),
    }
    for unit, count in (("labelled_rollout", len(labelled)), ("first_error", len(decided))):
        out[f"{name}_tokens_per_{unit}"] = round(tokens / count, 1) if count else None
        out[f"{name}_seconds_per_{unit}"] = round(run["seconds"] / count, 2) if count else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=os.environ.get("RWPIPE_TEST_MODEL", "data/models/smollm2-135m-instruct")
    )
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=4, help="rollouts per problem")
    parser.add_argument("--k", type=int, default=4, help="completions per tested prefix")
    parser.add_argument("--processbench", type=int, default=24, help="solutions (0: skip)")
    parser.add_argument("--pb-max-new-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rollouts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--caching", default="on", help=argparse.SUPPRESS)
    machine.add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        fn = {"rollouts": child_rollouts, "label": child_label, "pb": child_processbench}
        print(MARK + json.dumps(fn[args.child](args)), flush=True)
        return

    started = machine.start(args.other_work)
    out: dict[str, Any] = {
        "model": Path(args.model).name, "k": args.k, "k_first": max(1, args.k // 2),
        "problems": args.problems, "rollouts_per_problem": args.n,
        "processbench_max_new_tokens": args.pb_max_new_tokens,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rollouts = Path(tmp) / "rollouts.arrow"
        stats = run_child(args, "rollouts", rollouts=rollouts)
        out["rollout_correct_fraction"] = stats["correct_fraction"]
        runs = {
            name: run_child(args, "label", rollouts=rollouts, method=method, caching=caching)
            for name, method, caching in (
                ("mc", "mc", "on"),
                ("omegaprm", "omegaprm", "on"),
                ("mc_off", "mc", "off"),
            )
        }
    out |= compare(runs["mc"], runs["omegaprm"], runs["mc_off"])
    print(json.dumps(out, indent=2), file=sys.stderr, flush=True)
    if args.processbench:
        pb = run_child(args, "pb")
        out["processbench_solutions"] = len(pb["labels"])
        for method in ("mc", "omegaprm"):
            scores = processbench_scores(pb["labels"], pb[method]["pred"])
            out |= {f"processbench_{method}_{k}": v for k, v in scores.items()}
            out[f"processbench_{method}_tokens"] = pb[method]["tokens"]
            out[f"processbench_{method}_seconds"] = round(pb[method]["seconds"], 1)
        out["processbench_omegaprm_too_hard"] = pb["omegaprm"]["too_hard"]
    out = machine.write_results(args.out, out, started)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
