"""The README's two commands on a fresh clone, timed: `make demo` (install, then `dvc repro` of
the whole pipeline) and, with --tests, `make test` (what CI runs).

    python bench/pipeline.py [--clone /tmp/rwpipe-fresh] [--tests]

Clones this repository's HEAD into --clone (which must not exist; ../shared must sit beside it
for `make test`, as in CI), runs the commands there, and times every line of their output, so
each DVC stage's wall time is the gap between its "Running stage" line and the next one.
Results: bench/results/pipeline.json (seconds per stage, totals, the eval report's headline
figures); the full logs beside the clone.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
STAGE = re.compile(r"Running stage '([\w-]+)'")


def _timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run `cmd`, stream its output to `log` with a time offset per line."""
    start = time.perf_counter()
    lines = []
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - start
            lines.append((t, line.rstrip()))
            f.write(f"{t:8.1f} {line}")
        code = proc.wait()
    if code:
        sys.exit(f"{' '.join(cmd)} failed ({code}); see {log}")
    return time.perf_counter() - start, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clone", default="/tmp/rwpipe-fresh")
    ap.add_argument("--tests", action="store_true", help="also time `make test`")
    args = ap.parse_args()
    clone = Path(args.clone)
    if clone.exists():
        sys.exit(f"{clone} exists: give a fresh path")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip

    results: dict = {"commit": commit}
    total, lines = _timed(["make", "demo"], clone, clone.with_suffix(".demo.log"))
    marks = [(t, m.group(1)) for t, text in lines if (m := STAGE.search(text))]
    first = marks[0][0] if marks else total
    results["make_demo_s"] = round(total, 1)
    results["install_s"] = round(first, 1)  # everything before the first stage starts
    results["dvc_repro_s"] = round(total - first, 1)
    for (t, name), nxt in zip(marks, [*marks[1:], (total, "")], strict=True):
        results[f"stage_{name}_s"] = round(nxt[0] - t, 1)
    metrics = json.loads((clone / "data" / "eval" / "metrics.json").read_text())
    results["eval_pass_at_1_base"] = metrics["policy"]["pass@1"]
    if "policy_rl" in metrics:
        results["eval_pass_at_1_rl"] = metrics["policy_rl"]["pass@1"]
        results["rl_minus_base_pass_at_1"] = metrics["rl_vs_base"]["delta"]
        results["rl_minus_base_ci95_lo"] = metrics["rl_vs_base"]["delta_ci95_lo"]
        results["rl_minus_base_ci95_hi"] = metrics["rl_vs_base"]["delta_ci95_hi"]
    top = metrics["best_of_n_size"]
    for rule, acc in metrics["best_of_n"].items():
        results[f"best_of_{top}_{rule}"] = round(acc, 4)
    if args.tests:
        total, _ = _timed(["make", "test"], clone, clone.with_suffix(".test.log"))
        results["make_test_s"] = round(total, 1)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
