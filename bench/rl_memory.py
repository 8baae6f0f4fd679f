"""RL memory over a long run: does the `rl` stage's resident memory stay flat over its steps?

    python bench/rl_memory.py [--model DIR] [--steps 40] [--out DIR] [--other-work none]

Runs the user's commands (`rwpipe prepare`, then `rwpipe rl` at the shipped params with
`rl.steps` raised to --steps) three times in one session: with each micro-batch padded only to
its longest sequence (`rl.optim.pad_to_multiple_of: 1`, how rwpipe ran before the knob), as
shipped (widths padded to a multiple of 32, so the matmuls see few distinct shapes and oneDNN's
per-shape primitive cache stays small), and as shipped with glibc's mmap threshold pinned
(`MALLOC_MMAP_THRESHOLD_=131072`: large blocks are mapped and returned to the OS on free
instead of staying in the heap), which separates what the process holds from what the allocator
keeps. The RL curves record each step's seconds and RSS; the results keep, per run, the RSS at
the first step, at a tenth, at the middle and at the last step, its maximum, its rise from a
tenth in to the last step, and the summed and median step seconds. Every run draws the same
samples (same seed, same params), so their step lengths match. Results:
bench/results/rl_memory.json.
"""

import argparse
import copy
import csv
import statistics
from pathlib import Path

import machine
import yaml
from validity import run_cli  # one rwpipe command, as a user runs it

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "rl_memory.json"
# name -> (environment additions, rl.optim overrides)
RUNS: dict[str, tuple[dict[str, str], dict[str, int]]] = {
    "unpadded": ({}, {"pad_to_multiple_of": 1}),
    "shipped": ({}, {}),
    "mmap_threshold": ({"MALLOC_MMAP_THRESHOLD_": "131072"}, {}),
}


def summarise(name: str, curves: Path) -> dict[str, float]:
    """RSS at a few steps and the step seconds of one run's curves.csv, as flat keys."""
    rows = list(csv.DictReader(curves.open()))
    rss = [float(r["rss_gib"]) for r in rows]
    secs = [float(r["seconds"]) for r in rows]
    n = len(rows)
    at = {"first": 0, "tenth": max(n // 10 - 1, 0), "middle": n // 2 - 1, "last": n - 1}
    out = {f"{name}_rss_gib_{k}": rss[i] for k, i in at.items()}
    return out | {
        f"{name}_rss_gib_rise_after_tenth": round(rss[-1] - rss[at["tenth"]], 3),
        f"{name}_rss_gib_max": max(rss),
        f"{name}_steps": n,
        f"{name}_step_seconds_sum": round(sum(secs), 1),
        f"{name}_step_seconds_median": round(statistics.median(secs), 2),
        f"{name}_length_mean": round(statistics.mean(float(r["length"]) for r in rows), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="data/models/smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rwpipe-bench-rl-memory"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    machine.add_arguments(ap)
    args = ap.parse_args()
    started = machine.start(args.other_work)
    args.out.mkdir(parents=True, exist_ok=True)
    if not Path(args.model).is_dir():
        run_cli("model", args.model)
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    problems = args.out / "problems.arrow"
    results: dict[str, object] = {
        "model": Path(args.model).name,
        "rl_steps": args.steps,
        "pad_to_multiple_of": shipped["rl"]["optim"]["pad_to_multiple_of"],
        "mmap_threshold_env": " ".join(f"{k}={v}" for k, v in RUNS["mmap_threshold"][0].items()),
    }
    for name, (env, optim) in RUNS.items():
        params = copy.deepcopy(shipped)
        params["rl"]["steps"] = args.steps
        params["rl"]["optim"] |= optim
        p = args.out / f"params-{name}.yaml"
        p.write_text(yaml.safe_dump(params, sort_keys=False))
        if not problems.exists():
            run_cli("prepare", problems, "-p", p)
        policy, report = args.out / f"policy-{name}", args.out / f"rl-{name}"
        results[f"{name}_rl_s"] = run_cli(
            "rl", problems, args.model, policy, "--report-dir", report, "-p", p, env=env
        )
        results |= summarise(name, report / "curves.csv")
    s, m, u = "shipped", "mmap_threshold", "unpadded"
    results["shipped_rss_ratio_last_vs_unpadded"] = round(
        results[f"{s}_rss_gib_last"] / results[f"{u}_rss_gib_last"], 3
    )
    results["shipped_step_seconds_ratio_vs_unpadded"] = round(
        results[f"{s}_step_seconds_sum"] / results[f"{u}_step_seconds_sum"], 3
    )
    results["mmap_threshold_rss_ratio_last"] = round(
        results[f"{m}_rss_gib_last"] / results[f"{s}_rss_gib_last"], 3
    )
    results["mmap_threshold_step_seconds_ratio"] = round(
        results[f"{m}_step_seconds_sum"] / results[f"{s}_step_seconds_sum"], 3
    )
    machine.write_results(args.results, results, started)


if __name__ == "__main__":
    main()
