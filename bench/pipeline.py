"""The README's two commands on a fresh clone, timed: `make demo` (install, then `dvc repro` of
the whole pipeline) and, with --tests, `make test` (what CI runs).

    python bench/pipeline.py [--clone DIR] [--tests] [--out FILE] [--set KEY=VALUE ...]

Clones this repository's HEAD into --clone (default /tmp/rwpipe-fresh; it must not exist;
../shared must sit beside it for `make test`, as in CI), runs the commands there, and times
every line of their output, so each DVC stage's wall time is the gap between its "Running
stage" line and the next one. Results: bench/results/pipeline.json (seconds per stage, totals,
every number of the run's metrics files flattened: eval_*, train_rm_*, train_prm_*, rl_train_*,
search_*; the RL difference's verdict; `make test`'s counts; the machine facts of
bench/machine.py, versions read from the clone's venv); the full logs beside the clone. The
clone's model.cache_dir is an empty directory beside it, so the model stage converts as on a
fresh machine (unless `--set model.cache_dir=...` says otherwise). `--set
section.key=value` edits the clone's params.yaml before the run (e.g. `engine.dtype=float32`
with the trainers' dtypes, to time the float32 pipeline on a CPU where `dtype: auto` is
bfloat16); the overrides are recorded. `--out` writes elsewhere than pipeline.json
(pipeline_avx512.json for a machine with native bfloat16). `--refresh-tests LOG` only
re-derives a results file's slowest tests from that run's saved `make test` log.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import machine
import suite

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
STAGE = re.compile(r"Running stage '([\w-]+)'")
# pytest's last line: "==== 393 passed, 3 skipped, 1 xfailed in 2081.12s (0:34:41) ===="
PYTEST_TIME = re.compile(r" in (\d+(?:\.\d+)?)s\b")
METRICS = {  # flattened into the results under these prefixes
    "eval": "data/eval/metrics.json",
    "train_rm": "data/train_rm/metrics.json",
    "train_prm": "data/train_prm/metrics.json",
    "rl_train": "data/rl/metrics.json",
    "search": "data/search/metrics.json",
}
CLAIM = "RL raises eval pass@1 over the base policy"


def _timed(
    cmd: list[str], cwd: Path, log: Path, check: bool = True
) -> tuple[float, list[tuple[float, str]], int]:
    """Run `cmd`, stream its output to `log` with a time offset per line; exit on failure
    unless not `check` (then the exit code is returned with the rest)."""
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
    if code and check:
        sys.exit(f"{' '.join(cmd)} failed ({code}); see {log}")
    return time.perf_counter() - start, lines, code


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Numbers and strings of a nested metrics dict as flat keys (`a.b@4` -> `prefix_a_b_at_4`);
    lists are left out."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}_{str(k).replace('@', '_at_').replace('.', '_')}")
        return out
    if isinstance(value, bool | int | str) or value is None:
        return {prefix: value}
    if isinstance(value, float):
        return {prefix: round(value, 4)}
    return {}


def pytest_counts(lines: list[tuple[float, str]]) -> dict[str, float]:
    """`make test`'s outcome counts and pytest's own seconds, from its summary line."""
    summary = next((text for _, text in reversed(lines) if PYTEST_TIME.search(text)), "")
    out: dict[str, float] = {
        f"make_test_{kind.rstrip('s') if kind.startswith('error') else kind}": int(n)
        for n, kind in suite.COUNT.findall(summary)
    }
    if m := PYTEST_TIME.search(summary):
        out["make_test_pytest_s"] = float(m.group(1))
    return out


def slowest_tests(texts: list[str], count: int = 10) -> dict[str, Any]:
    """`make test`'s slowest test phases (pytest's --durations lines, as `bench/suite.py`
    records them) under `make_test_slowest_<i>_{test,s}`."""
    got = suite.parse(texts, count)
    return {f"make_test_{k}": v for k, v in got.items() if k.startswith("slowest_")}


def refresh_tests(out: Path, log: Path) -> None:
    """Re-derive the `make test` figures of the results file `out` from the run's own test
    log (`<clone>.test.log`, lines "<seconds> <text>"), keeping its machine facts and times."""
    texts = [m.group(1) for line in log.read_text().splitlines()
             if (m := re.match(r"^\s*\d+\.\d (.*)$", line))]  # fmt: skip
    if not texts:
        sys.exit(f"{log}: no timed lines (not a log of bench/pipeline.py)")
    machine.update_results(out, slowest_tests(texts), drop_prefix="make_test_slowest_")


def override(params: Path, settings: list[str]) -> None:
    """Set dotted `key=value` pairs (values parsed as YAML) in a params.yaml; a key that does not
    exist is an error, as in `dvc exp run -S`."""
    import yaml

    data = yaml.safe_load(params.read_text())
    for item in settings:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"--set {item}: params.yaml has no {key}")
        node[leaf] = yaml.safe_load(value)
    params.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clone", default="/tmp/rwpipe-fresh")
    ap.add_argument("--tests", action="store_true", help="also time `make test`")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="params.yaml overrides in the clone (values parsed as YAML)",
    )
    ap.add_argument(
        "--refresh-tests",
        type=Path,
        metavar="LOG",
        help="only re-derive --out's slowest tests from that run's `make test` log",
    )
    machine.add_arguments(ap)
    args = ap.parse_args()
    if args.refresh_tests:
        refresh_tests(args.out, args.refresh_tests)
        return
    started = machine.start(args.other_work)
    clone = Path(args.clone)
    if clone.exists():
        sys.exit(f"{clone} exists: give a fresh path")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip

    results: dict = {"commit": commit}
    if not any(item.startswith("model.cache_dir=") for item in args.set):
        # a fresh machine's run: the model is converted, not copied from an earlier run's cache
        args.set.append(f"model.cache_dir={clone}.model-cache")
    if args.set:
        override(clone / "params.yaml", args.set)
        results["params_overrides"] = " ".join(args.set)
    total, lines, _ = _timed(["make", "demo"], clone, clone.with_suffix(".demo.log"))
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
        results["rl_minus_base_claim"] = CLAIM
        results["rl_minus_base_verdict"] = machine.verdict(
            results["rl_minus_base_ci95_lo"], results["rl_minus_base_ci95_hi"]
        )
    top = metrics["best_of_n_size"]
    for rule, acc in metrics["best_of_n"].items():
        results[f"best_of_{top}_{rule}"] = round(acc, 4)
    for prefix, path in METRICS.items():
        if (clone / path).exists():
            results |= flatten(json.loads((clone / path).read_text()), prefix)
    if args.tests:
        log = clone.with_suffix(".test.log")
        total, lines, code = _timed(["make", "test"], clone, log, check=False)
        results["make_test_s"] = round(total, 1)
        results["make_test_exit_code"] = code  # failures are a result too, recorded
        results |= pytest_counts(lines) | slowest_tests([text for _, text in lines])
    venv = clone / ".venv" / "bin" / "python"
    results = machine.write_results(args.out, results, started, python=str(venv), repo=clone)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
