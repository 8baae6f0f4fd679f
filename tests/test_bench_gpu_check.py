"""bench/gpu_check.py at its CPU smoke size: every stage runs through its library entry point and
the results file holds the measurements and the machine facts.

    .venv/bin/python -m pytest tests/test_bench_gpu_check.py
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_cpu_run_measures_every_stage(tmp_path, smollm2_dir):
    results = tmp_path / "gpu.json"
    cmd = [
        sys.executable, "bench/gpu_check.py", "--size", "tiny", "--device", "cpu",
        "--tokenizer", str(smollm2_dir), "--results", str(results),
        "--work", str(tmp_path / "work"), "--other-work", "pytest smoke",
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "artifacts valid: True" in run.stdout
    got = json.loads(results.read_text())
    from rwpipe.runtime import auto_dtype_name

    assert got["rollout_tokens_per_s"] > 0
    assert got["rollout_dtype"] == auto_dtype_name(on_cpu=True)  # bfloat16 on native-bf16 CPUs
    assert got["train_prm_tokens_per_s"] > 0 and got["train_prm_mfu"] is None  # CPU: no MFU
    assert got["rl_step_seconds"] > 0
    assert got["artifacts_valid"] is True
    assert got["params"] > got["params_non_embedding"] > 0
    assert got["vocab_size"] == 49152  # from the tokenizer, not the architecture's default
    assert got["device"] == "cpu" and got["gpu"] == "none" and got["gpu_name"] is None
    assert got["machine_facts_version"] >= 1 and got["cpu_count"] >= 1
    assert got["git_commit"] and got["other_work"] == "pytest smoke"
