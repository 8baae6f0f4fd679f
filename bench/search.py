"""Test-time scaling on a real benchmark: every `rwpipe search` method at every budget with the
validity bench's stronger policy on GSM8K, accuracy against generated tokens with intervals.

    python bench/search.py [--policy qwen2.5-coder-0.5b-instruct] [--problems 16]
                           [--budgets 1 2 4 8] [--out DIR]

The setting is the validity bench's (`bench/validity.py`): the policy is a bench-only GGUF model
(`bench/models.py`, SHA-256 pinned) turned into a model directory by `rwpipe model`; the PRM is
a discriminative PRM on the embedded SmolLM2-135M (smaller than the policy: the weak-verifier
setting) trained with `rwpipe train-prm` on Monte-Carlo step labels (`rwpipe annotate`, method
`mc`, the policy as completer) of the policy's rollouts on GSM8K train problems. The search runs
on GSM8K test problems (`../shared/data/gsm8k/test.jsonl`), which tune nothing: every knob is
the shipped params.yaml's or fixed below before the run.

The commands are the user's (`rwpipe model / prepare / rollout / annotate / train-prm /
search`); the stage's metrics are flattened into `bench/results/search.json` under `search_*`
(the keys the pipeline bench uses, so BENCHMARKS renders both with one table), with the sizes,
timings and machine facts. A re-run in the same --out skips every command whose output exists.

GSM8K carries no difficulty level, so the compute-optimal table has one bucket ("unknown").
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import machine
import models
import validity
from pipeline import flatten

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "search.json"


def search_params(args: argparse.Namespace) -> dict[str, Any]:
    """The search section of the run (the rest is the validity bench's shared settings)."""
    return {
        "problems": args.problems,
        "split": "eval",
        "budgets": args.budgets,
        "shard_size": 8,
        "max_new_tokens": args.max_new_tokens,  # the rollouts' limit: equal per-solution budgets
        "step_max_tokens": 128,  # GSM8K steps (paragraphs) run longer than the demo's
        "max_steps": 12,
    }


def run(args: argparse.Namespace, work: Path, timings: dict[str, float]) -> dict[str, Path]:
    """Policy, verifier base, problems, rollouts, MC labels, the PRM, and the search."""
    rw = validity.rwpipe
    gguf = models.fetch(args.policy, ROOT / "data" / "bench-models")
    vargs = argparse.Namespace(
        policy=args.policy, n_train=args.n_train, n_eval=args.problems,
        max_new_tokens=args.max_new_tokens, label_budget_tokens=args.label_budget_tokens,
        label_max_new_tokens=args.label_max_new_tokens, samples=max(args.budgets),
    )  # fmt: skip
    shared = validity.base_params(vargs, gguf)
    shared["search"] = search_params(args)
    p = validity.write_params(work / "params.yaml", shared)
    paths = {"policy": work / "policy", "verifier": work / "verifier",
             "problems": work / "problems.arrow", "train": work / "rollouts_train.arrow",
             "eval": work / "rollouts_eval.arrow", "labels": work / "labels_mc.arrow",
             "prm": work / "prm", "search": work / "search"}  # fmt: skip
    v = validity.write_params(work / "params-verifier.yaml", shared | {"model": {}})
    for key, params in (("policy", p), ("verifier", v)):
        rw("model", paths[key], "-p", params, timings=timings, name=f"model_{key}",
           out=paths[key])  # fmt: skip
    rw("prepare", paths["problems"], "-p", p, timings=timings, name="prepare",
       out=paths["problems"])  # fmt: skip
    rw("rollout", paths["problems"], paths["policy"], paths["train"], "--splits", "train",
       "-p", p, timings=timings, name="rollout_train", out=paths["train"])  # fmt: skip
    e = validity.write_params(work / "params-eval.yaml", shared | {"rollout": shared["rollout"] | {
        "sampling": {"n": max(args.budgets), "max_new_tokens": args.max_new_tokens}}})  # fmt: skip
    rw("rollout", paths["problems"], paths["policy"], paths["eval"], "--splits", "eval",
       "-p", e, timings=timings, name="rollout_eval", out=paths["eval"])  # fmt: skip
    mc = shared | {"annotate": shared["annotate"] | {"method": "mc"}}
    m = validity.write_params(work / "params-mc.yaml", mc)
    rw("annotate", paths["train"], paths["policy"], paths["labels"], "-p", m, timings=timings,
       name="annotate_mc", out=paths["labels"])  # fmt: skip
    rw("train-prm", paths["labels"], paths["verifier"], paths["prm"], "-p", p, timings=timings,
       name="train_prm", out=paths["prm"])  # fmt: skip
    rw("search", paths["problems"], paths["eval"], paths["policy"], paths["prm"],
       paths["search"], "-p", p, timings=timings, name="search", out=paths["search"])  # fmt: skip
    return paths


def summary(work: Path) -> dict[str, Any]:
    """The search stage's metrics recomputed from its records with the current code (the same
    `rwpipe.eval.budget.summarize` the stage ran), for --refresh."""
    from rwpipe.artifacts import read_artifact
    from rwpipe.config import BaseConfig, SearchStageConfig, load_section
    from rwpipe.eval.budget import summarize

    cfg = load_section(work / "params.yaml", "search", SearchStageConfig)
    base = load_section(work / "params.yaml", "base", BaseConfig)
    records = read_artifact(work / "search" / "records.arrow", "search_records").to_pylist()
    stage = json.loads((work / "search" / "metrics.json").read_text())
    return summarize(records, cfg, seed=base.seed) | {"score_kind": stage["score_kind"]}


def verifier_facts(work: Path) -> dict[str, Any]:
    """What the PRM learned from: how many rollouts the label budget step-labelled, how many
    correct ones were labelled all-correct without sampling, how many carry their outcome
    only; and the PRM's held-out step AUC from its card (`rwpipe train-prm` holds out a
    fraction of the training problems: GSM8K train, never the searched test problems)."""
    import pyarrow as pa

    with pa.memory_map(str(work / "labels_mc.arrow")) as source:
        status = pa.ipc.open_file(source).read_all().column("status").to_pylist()
    card = json.loads((work / "prm" / "rwpipe-model.json").read_text())["metrics"]
    return {"labels_rollouts": len(status), "labels_step_labelled": status.count("labelled"),
            "labels_inferred_correct": status.count("inferred"),
            "labels_outcome_only": status.count("outcome_only"),
            "prm_train_items": card["train_items"]} | {
        f"prm_heldout_{k}": card[k] for k in ("step_auc", "step_auc_ci95_lo", "step_auc_ci95_hi",
                                              "heldout_solutions")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--policy", default="qwen2.5-coder-0.5b-instruct", choices=sorted(models.MODELS)
    )
    # Sized for about half an hour on two cores with native bf16 (the tree methods generate ~20
    # solutions' worth of tokens per problem at N = 8); on a bigger machine raise every count.
    ap.add_argument("--problems", type=int, default=16, help="GSM8K test problems searched")
    ap.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--n-train", type=int, default=24, help="GSM8K train problems for labels")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--label-budget-tokens", type=int, default=32000)
    ap.add_argument("--label-max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rwpipe-search"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="add the facts read from --out's artifacts to the existing results, keeping its "
        "timings and machine facts (after a change to what the bench records, not to the run)",
    )
    machine.add_arguments(ap)
    args = ap.parse_args()
    if args.refresh:
        new = flatten(summary(args.out), "search") | verifier_facts(args.out)
        machine.update_results(args.results, new, drop_prefix="search_")
        return
    started = machine.start(args.other_work)
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {k: v for k, v in vars(args).items()
                               if k not in ("out", "results", "other_work", "budgets")}  # fmt: skip
    results |= {"verifier_base": "smollm2-135m-instruct", "prm_labels": "mc",
                "prompt_template": validity.PROMPT}  # fmt: skip
    paths = run(args, args.out, timings)
    metrics = json.loads((paths["search"] / "metrics.json").read_text())
    results |= flatten(metrics, "search") | verifier_facts(args.out)
    machine.write_results(args.results, results | timings, started)
    print(json.dumps({k: v for k, v in results.items() if k.endswith("_accuracy")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
