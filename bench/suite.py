"""The test suite's wall time and its slowest tests, on this checkout: what CI runs (`make test`
is `python -m pytest`), timed.

    python bench/suite.py [--out bench/results/suite.json] [--slowest 10] [--other-work none]

Runs `python -m pytest --durations=N` in the repository root with this interpreter, and records
the wall seconds, pytest's own count of passed / failed / skipped tests and the N slowest test
phases (setup or call) with their seconds, as flat keys (`slowest_1_test`, `slowest_1_s`, ...),
with the machine facts of bench/machine.py. A failing suite is recorded too (its exit code and
counts): a result, not a crash. `suite_avx512.json` is the name for a CPU with native bfloat16,
so that an AVX2 machine's `suite.json` stays.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "suite.json"
# pytest's durations lines: "459.23s call     tests/test_pipeline.py::test_repro_builds..."
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s (setup|call|teardown)\s+(\S+)$")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)\b")


def parse(lines: list[str], slowest: int) -> dict:
    """pytest's outcome counts (from its last line) and the `slowest` duration lines."""
    out: dict = {}
    durations = [m for line in lines if (m := DURATION.match(line.strip()))][:slowest]
    for i, m in enumerate(durations, 1):
        out[f"slowest_{i}_test"] = f"{m.group(3)} ({m.group(2)})"
        out[f"slowest_{i}_s"] = float(m.group(1))
    summary = next((line for line in reversed(lines) if COUNT.search(line)), "")
    for n, kind in COUNT.findall(summary):
        out[f"tests_{kind.rstrip('s') if kind.startswith('error') else kind}"] = int(n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--slowest", type=int, default=10)
    ap.add_argument("--log", type=Path, default=Path("/tmp/rwpipe-bench-suite.log"))
    ap.add_argument(
        "--pytest-args", default="", help='extra pytest arguments, e.g. "-n 2 --dist loadfile"'
    )
    machine.add_arguments(ap)
    args = ap.parse_args()
    started = machine.start(args.other_work)
    cmd = [sys.executable, "-m", "pytest", f"--durations={args.slowest}", "-p", "no:cacheprovider",
           *args.pytest_args.split()]  # fmt: skip
    begin = time.perf_counter()
    with args.log.open("w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - begin
    results = {"suite_s": round(seconds, 1), "suite_exit_code": code,
               "pytest_args": args.pytest_args}  # fmt: skip
    results |= parse(args.log.read_text().splitlines(), args.slowest)
    results = machine.write_results(args.out, results, started)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
