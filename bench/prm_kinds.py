"""Discriminative, implicit and generative PRMs trained on the same labels, measured on human
step labels (ProcessBench, PRMBench) with their training and scoring cost, and the generative
PRM scored by the vote over K sampled critiques.

    python bench/prm_kinds.py --labels data/labels.arrow --rollouts data/rollouts.arrow
                              [--base data/models/smollm2-135m-instruct] [--votes 4]

Every model is trained and evaluated with the user's commands (`rwpipe train-prm`, `rwpipe
eval --prm`), on the shipped params.yaml with only `train_prm.kind` (and `eval.critique_votes`
for the vote) changed. Labels and rollouts are the default pipeline's (`dvc repro`); human
labels: the shipped ProcessBench GSM8K sample (`--pb-items`) and, where `../shared/data` sits
beside the checkout, `--prmbench-per-class` PRMBench items per error class. The threshold is
the fixed `eval.threshold` for every model (nothing tuned). Results:
bench/results/prm_kinds.json, flat keys per variant.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import machine
import yaml
from validity import run_cli as rwpipe  # one rwpipe command, as a user runs it

ROOT = Path(__file__).resolve().parents[1]
PRMBENCH = ROOT.parent / "shared" / "data" / "prmbench" / "prmbench_prm800k_test.jsonl"
RESULTS = ROOT / "bench" / "results" / "prm_kinds.json"
KINDS = ("discriminative", "implicit", "generative")


def params(path: Path, kind: str, args: argparse.Namespace, votes: int = 0) -> Path:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["train_prm"] |= {"kind": kind, "name": f"prm_{kind}"}
    p["eval"] |= {
        "processbench": "sample:gsm8k", "processbench_max": args.pb_items,
        "prmbench": str(PRMBENCH) if PRMBENCH.exists() and args.prmbench_per_class else "",
        "prmbench_max": args.prmbench_per_class, "critique_votes": votes,
        "critique_max_new_tokens": args.critique_max_new_tokens,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def flat(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures one eval run gives a PRM: ProcessBench F1, PRMBench PRMScore (intervals),
    best-of-N under min aggregation, and a vote's sampling cost."""
    out: dict[str, Any] = {}
    pb = metrics.get("processbench", {}).get("gsm8k")
    if pb:
        out |= {f"{prefix}_pb_{k}": v for k, v in pb.items() if k.startswith(("f1", "acc_"))}
        out[f"{prefix}_pb_solutions"] = pb["solutions"]
    pm = metrics.get("prmbench", {}).get("overall")
    if pm:
        out |= {f"{prefix}_prmbench_{k}": v for k, v in pm.items()
                if k.startswith(("prmscore", "f1"))}  # fmt: skip
        out[f"{prefix}_prmbench_solutions"] = pm["solutions"]
    for key, value in (metrics.get("claims") or {}).items():
        if key.startswith("prm_") and key.endswith("beats_pass1"):
            keep = ("estimate", "ci95_lo", "ci95_hi", "n", "verdict", "claim")
            out |= {f"{prefix}_bon_beats_pass1_{k}": v for k, v in value.items() if k in keep}
    out |= {f"{prefix}_scoring_{k}": v for k, v in (metrics.get("prm_scoring") or {}).items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--rollouts", type=Path, required=True, help="rollouts with an eval split")
    ap.add_argument("--base", type=Path, default=ROOT / "data/models/smollm2-135m-instruct")
    ap.add_argument("--pb-items", type=int, default=64)
    ap.add_argument("--prmbench-per-class", type=int, default=8)
    ap.add_argument("--votes", type=int, default=4, help="K sampled critiques (0: skip)")
    ap.add_argument("--critique-max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rwpipe-bench-prm-kinds"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    machine.add_arguments(ap)
    args = ap.parse_args()
    started = machine.start(args.other_work)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"labels": str(args.labels), "pb_items": args.pb_items,
                               "prmbench_per_class": args.prmbench_per_class,
                               "votes": args.votes}  # fmt: skip
    variants = [(kind, kind, 0) for kind in KINDS]
    if args.votes:
        variants.append((f"generative_vote{args.votes}", "generative", args.votes))
    for name, kind, votes in variants:
        model = args.out / f"prm_{kind}"
        p = params(args.out / f"params-{name}.yaml", kind, args, votes)
        if not votes:  # the vote scores the generative model trained above
            results[f"{name}_train_s"] = rwpipe("train-prm", args.labels, args.base, model,
                                                "-p", p)  # fmt: skip
            card = json.loads((model / "rwpipe-model.json").read_text())["metrics"]
            results |= {f"{name}_train_{k}": card.get(k) for k in
                        ("train_tokens", "train_seconds", "step_auc", "step_auc_ci95_lo",
                         "step_auc_ci95_hi", "eval_steps")}  # fmt: skip
        d = args.out / f"eval_{name}"
        results[f"{name}_eval_s"] = rwpipe("eval", args.rollouts, d, "--prm", model, "-p", p)
        results |= flat(name, json.loads((d / "metrics.json").read_text()))
        machine.write_results(args.results, results, started)  # each variant as it lands
    print(json.dumps({k: v for k, v in results.items() if "f1" in k or "prmscore" in k}, indent=1))


if __name__ == "__main__":
    main()
