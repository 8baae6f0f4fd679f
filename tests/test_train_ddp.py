"""Multi-process reward-model training: two CPU processes under torchrun (gloo) take the same
optimizer steps on the same global batches as one process, finish with an odd number of
micro-batches, and resume exactly.

python -m pytest tests/test_train_ddp.py -q
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rwpipe import artifacts
from rwpipe.model.tiny import build_tiny_lm
from tests.conftest import ROOT
from tests.test_train import _labels
from tests.train_ddp_worker import CASES, train_case

TIMING = ("train_seconds", "train_tokens_per_s")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labels.arrow"
    artifacts.write_artifact(_labels(), path, "labels")
    return path


def _torchrun(tiny, labels, out, cases, timeout=600):
    """The worker on two processes; a hang is killed (the whole process group) and fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           str(ROOT / "tests" / "train_ddp_worker.py"), str(tiny), str(labels), str(out),
           *cases]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun stops its workers (each in a session of its own)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(f"two-process training hung (killed after {timeout}s):\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]


def _ranks(out, case):
    return [json.loads((out / case / f"rank{r}.json").read_text()) for r in (0, 1)]


def _history(out, case, result):
    """Per-step records: returned (resume), else the report's loss.csv."""
    if result["history"] is not None:
        return result["history"]
    import csv

    with open(out / case / "report" / "loss.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _assert_same_weights(a, b, tol=1e-5):
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (a, b))
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= tol, worst


@pytest.mark.slow
def test_two_processes_take_the_single_process_steps(tmp_path, tiny_dir, labels):
    """Per case (see CASES: steps of 2-2-1, 3-2 and 1 micro-batches, five per epoch):
    the model rank 0 saves equals the one-process model within 1e-5, both processes end with
    the same weights and metrics, and the step records match the one-process run's."""
    _torchrun(tiny_dir, labels, tmp_path / "dp", list(CASES))
    ones = {
        c: train_case(c, tiny_dir, labels, tmp_path / "one" / c) for c in CASES if c != "resume"
    }
    for case in CASES:
        ref = "prm" if case == "resume" else case  # killed and resumed vs one uninterrupted run
        one = ones[ref]
        r0, r1 = _ranks(tmp_path / "dp", case)
        assert r0["world"] == r1["world"] == 2 and one["world"] == 1
        assert r0["digest"] == r1["digest"], case  # identical replicas
        _assert_same_weights(tmp_path / "dp" / case, tmp_path / "one" / ref)
        strip = {k: v for k, v in r0["metrics"].items() if k not in TIMING}
        assert strip == {k: v for k, v in r1["metrics"].items() if k not in TIMING}
        assert strip["steps"] == one["metrics"]["steps"] > 0, case
        assert strip["train_tokens"] == one["metrics"]["train_tokens"], case
        many = _history(tmp_path / "dp", case, r0)
        single = _history(tmp_path / "one", ref, one)
        assert len(many) == len(single) == strip["steps"], case
        for m, s in zip(many, single, strict=True):
            assert (m["step"], m["epoch"]) == (s["step"], s["epoch"]), case
            assert m["lr"] == pytest.approx(s["lr"], rel=1e-9), case
            assert m["loss"] == pytest.approx(s["loss"], abs=1e-5), (case, m, s)
            assert m["grad_norm"] == pytest.approx(s["grad_norm"], abs=2e-4), (case, m, s)
    # the saved model moved away from the base (the comparison above is not vacuous)
    base = load_file(str(tiny_dir / "model.safetensors"))
    full = load_file(str(tmp_path / "one" / "orm-bt-full" / "model" / "model.safetensors"))
    assert any(not torch.equal(base[k], full[k]) for k in base if k in full)
