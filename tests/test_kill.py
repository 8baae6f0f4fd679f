"""Every stage SIGKILLed at a random point and run again finishes with the same artifact.

The chain runs on a tiny random model with the transformers engine (the real model's kill and
resume are covered in test_rollout.py and test_annotate.py); each stage's reference run is
also the next stage's input. The kill lands at a seeded random fraction of the reference run's
wall time: before, during or after the first shard or checkpoint, whichever it falls on. What
must hold in every case: no half-written output (it is absent, or it is already the final
artifact), and the rerun's artifact equals the uninterrupted one.

python -m pytest tests/test_kill.py -q
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rwpipe import artifacts
from tests.conftest import CLI, ROOT, run_rwpipe

pytestmark = pytest.mark.slow

ENGINE = {"backend": "hf", "hf_batch_size": 8}


def _params(where: Path) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["prepare"] |= {"n_train": 4, "n_eval": 2, "synthetic": {"kinds": ["add"]}}
    data["rollout"] |= {"shard_size": 1, "engine": ENGINE}
    data["rollout"]["sampling"] |= {"n": 2, "max_new_tokens": 16}
    data["annotate"] |= {"method": "mc", "shard_size": 1, "engine": ENGINE}
    data["annotate"]["completion"] |= {"k": 2, "k_first": 1, "max_new_tokens": 8}
    data["train_prm"]["optim"] |= {"epochs": 3, "batch_size": 2, "checkpoint_every": 1,
                                   "max_length": 96}  # fmt: skip
    data["rl"] |= {"steps": 4, "prompts_per_step": 2, "group_size": 2, "engine": ENGINE}
    data["rl"]["sampling"] |= {"max_new_tokens": 8}
    data["rl"]["optim"] |= {"checkpoint_every": 1, "batch_size": 4}
    data["eval"] |= {"draws": 5, "ns": [1, 2]}
    data["eval"]["search"] |= {"problems": 0}
    data["search"] |= {"problems": 2, "budgets": [1, 2], "shard_size": 1, "max_steps": 2,
                       "step_max_tokens": 8, "max_new_tokens": 16, "engine": ENGINE}  # fmt: skip
    path = where / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# stage -> (arguments; OUT is the output, other names are outputs of earlier stages)
CHAIN = {
    "prepare": ["OUT.arrow"],
    "rollout": ["prepare", "MODEL", "OUT.arrow"],
    "annotate": ["rollout", "MODEL", "OUT.arrow"],
    "train-prm": ["annotate", "MODEL", "OUT"],
    "rl": ["prepare", "MODEL", "OUT"],
    "eval": ["rollout", "OUT", "--prm", "train-prm"],
    "search": ["prepare", "rollout", "MODEL", "train-prm", "OUT"],
}


def _argv(stage: str, out: Path, made: dict, model: Path, params: Path) -> list:
    args = []
    for a in CHAIN[stage]:
        if a.startswith("OUT"):
            args.append(out)
        elif a == "MODEL":
            args.append(model)
        else:
            args.append(made.get(a, a))
    return [stage, *args, "--params", params]


def _out(where: Path, stage: str) -> Path:
    suffix = ".arrow" if "OUT.arrow" in CHAIN[stage] else ""
    return where / f"{stage}{suffix}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Reference (uninterrupted) runs: stage -> (output, seconds)."""
    from rwpipe.model.tiny import build_tiny_lm

    where = tmp_path_factory.mktemp("chain")
    model = build_tiny_lm(where / "tiny", seed=0)
    params = _params(where)
    made, seconds = {}, {}
    for stage in CHAIN:
        out = _out(where / "ref", stage)
        t0 = time.monotonic()
        run_rwpipe(*_argv(stage, out, made, model, params))
        made[stage], seconds[stage] = out, time.monotonic() - t0
    print("reference seconds:", {k: round(v, 1) for k, v in seconds.items()})
    return {"made": made, "seconds": seconds, "model": model, "params": params}


def _same(stage: str, a: Path, b: Path) -> None:
    """Equal artifacts, ignoring what legitimately differs between runs (timings)."""
    if a.suffix == ".arrow":
        kind = {"prepare": "problems", "rollout": "rollouts", "annotate": "labels"}[stage]
        ta = artifacts.read_artifact(a, kind).replace_schema_metadata(None)
        tb = artifacts.read_artifact(b, kind).replace_schema_metadata(None)
        if "seed" in ta.column_names:
            ta, tb = ta.drop_columns(["seed"]), tb.drop_columns(["seed"])
        assert ta.equals(tb), f"{stage}: rows differ after the kill and rerun"
    elif (a / "model.safetensors").is_file():
        import torch
        from safetensors.torch import load_file

        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=f"{stage}: {k}")
    else:  # eval, search: the metrics, minus nothing (no timings are recorded there)
        ma = json.loads((a / "metrics.json").read_text())
        mb = json.loads((b / "metrics.json").read_text())
        assert ma == mb, f"{stage}: metrics differ after the kill and rerun"


@pytest.mark.parametrize("stage", list(CHAIN))
def test_sigkill_at_a_random_point_then_rerun_gives_the_same_artifact(chain, stage, tmp_path):
    ref, seconds = chain["made"][stage], chain["seconds"][stage]
    out = _out(tmp_path, stage)
    argv = _argv(stage, out, chain["made"], chain["model"], chain["params"])
    delay = random.Random(stage).uniform(0.35, 0.9) * seconds
    cmd = [sys.executable, "-c", CLI, *map(str, argv)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if out.exists():  # the stage finished before the kill, or the output is already whole
        _same(stage, ref, out)
    run_rwpipe(*argv)
    _same(stage, ref, out)
    # shards, checkpoints and the temporaries of the killed run are gone
    left = {p.name for p in tmp_path.iterdir()}
    assert left <= {out.name, f"{out.name}.report"} and out.name in left, left
