"""Rollout core with a scripted generator, and the stage end to end on the real model.

python -m pytest tests/test_rollout.py -q            # add -m "not slow" for the unit part
"""

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest
import yaml

from rwpipe import artifacts
from rwpipe.config import RolloutConfig, SamplingConfig
from rwpipe.errors import InputError
from rwpipe.rollout import run_rollout, select_problems
from rwpipe.steps import StepRule
from tests.conftest import CLI, ROOT, run_rwpipe
from tests.fakes import ScriptedGenerator


def _problems(n_train: int = 3, n_eval: int = 2) -> pa.Table:
    rows = [
        {
            "problem_id": f"p{i}",
            "split": "train" if i < n_train else "eval",
            "source": "synthetic",
            "question": f"What is {i} + {i}?",
            "answer": str(2 * i),
            "solution": None,
            "category": "add",
            "level": 1,
        }
        for i in range(n_train + n_eval)
    ]
    return artifacts.validate(pa.Table.from_pylist(rows), "problems", "test")


def _script(prompt: str, i: int, seed: int) -> str:
    """Sample 0 is right, the others wrong; two steps each; the seed shows in the text."""
    q = prompt.split("What is ")[1].split(" +")[0]
    answer = 2 * int(q) + (0 if i == 0 else 1)
    return f"Add {q} and {q} (seed {seed % 97}).\n\nSo the answer is \\boxed{{{answer}}}."


def _cfg(**kw) -> RolloutConfig:
    return RolloutConfig(sampling=SamplingConfig(n=3, max_new_tokens=50), shard_size=2, **kw)


def _run(tmp_path, cfg, generator, name="rollouts.arrow"):
    store = artifacts.ShardStore(tmp_path / name, "rollouts", {"cfg": cfg})
    problems = select_problems(_problems(), cfg.splits, "problems.arrow")
    n, stats = run_rollout(problems, generator, cfg, seed=7, store=store, steps=StepRule())
    return store.finish(n, section="rollout", config=cfg, stats=stats), stats


def test_rows_steps_verdicts_and_summary(tmp_path):
    gen = ScriptedGenerator(_script)
    table, stats = _run(tmp_path, _cfg(), gen)
    assert table.num_rows == 5 * 3
    rows = table.to_pylist()
    for r in rows:
        assert "".join(r["steps"]) == r["completion"] and len(r["steps"]) == 2
        assert r["num_tokens"] == len(r["token_ids"]) == len(r["logprobs"])
        assert r["verdict"] == ("correct" if r["sample_idx"] == 0 else "incorrect")
        assert r["prompt"].startswith("<sys></sys><user>What is")
    assert stats["rows"] == 15 and stats["correct_fraction"] == pytest.approx(5 / 15, abs=1e-4)
    assert stats["tokens"] == sum(r["num_tokens"] for r in rows)
    # one generate call per shard of 2 problems, each with its own seed
    assert [len(p) for p, _ in gen.calls] == [2, 2, 1]
    assert len({params.seed for _, params in gen.calls}) == 3
    meta = artifacts.artifact_metadata(
        artifacts.read_artifact(tmp_path / "rollouts.arrow", "rollouts")
    )
    assert meta["stats"]["rows"] == 15 and meta["config"]["shard_size"] == 2


def test_splits_and_prompt_template(tmp_path):
    gen = ScriptedGenerator(_script)
    cfg = _cfg(splits=("eval",), prompt_template="Solve. {question} Box it.", system_prompt="S")
    table, _ = _run(tmp_path, cfg, gen)
    assert set(table["split"].to_pylist()) == {"eval"}
    assert gen.calls[0][0][0] == "<sys>S</sys><user>Solve. What is 3 + 3? Box it.</user><assistant>"


def test_empty_selection_is_an_input_error():
    with pytest.raises(InputError, match="problems.arrow: no problems in split"):
        select_problems(_problems(n_eval=0), ("eval",), "problems.arrow")


class _Crash(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_rows(tmp_path):
    cfg = _cfg()
    full, _ = _run(tmp_path / "a", cfg, ScriptedGenerator(_script))

    calls = []

    def crashing(prompt, i, seed):
        calls.append(seed)
        if len(set(calls)) == 3:  # die during the third shard
            raise _Crash
        return _script(prompt, i, seed)

    with pytest.raises(_Crash):
        _run(tmp_path / "b", cfg, ScriptedGenerator(crashing))
    assert not (tmp_path / "b" / "rollouts.arrow").exists()
    resumed_gen = ScriptedGenerator(_script)
    resumed, stats = _run(tmp_path / "b", cfg, resumed_gen)
    assert len(resumed_gen.calls) == 1  # only the unfinished shard ran again
    assert stats["resumed_shards"] == 2
    assert resumed.equals(full)


# ----------------------------------------------------------------------------------------------
# The stage as users run it: a subprocess per command, the real SmolLM2, each engine.


def _params(write_params, backend: str, **rollout) -> "os.PathLike":
    sampling = {"n": 2, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 24, "stop": []}
    section = {"shard_size": 1, "sampling": sampling, **rollout}
    params = write_params({"rollout": section, "prepare": {"n_train": 3, "n_eval": 1}})
    text = params.read_text().replace("backend: auto", f"backend: {backend}")
    params.write_text(text)
    return params


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory, smollm2_dir) -> "os.PathLike":
    path = tmp_path_factory.mktemp("problems") / "problems.arrow"
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["prepare"] |= {"n_train": 3, "n_eval": 1}
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    run_rwpipe("prepare", path, "--params", params)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_stage_on_the_real_model(tmp_path, write_params, problems_file, smollm2_dir, backend):
    out = tmp_path / "rollouts.arrow"
    run_rwpipe(
        "rollout", problems_file, smollm2_dir, out, "--params", _params(write_params, backend)
    )
    table = artifacts.read_artifact(out, "rollouts")  # schema, keys, ranges all hold
    assert table.num_rows == 4 * 2
    for r in table.to_pylist():
        assert r["num_tokens"] == len(r["token_ids"]) == len(r["logprobs"]) > 0
        assert "".join(r["steps"]) == r["completion"]
        assert max(r["logprobs"]) <= 0
        assert r["prompt"].startswith("<|im_start|>system") and r["prompt"].endswith("assistant\n")
    assert not out.with_name(out.name + ".parts").exists()
    stats = artifacts.artifact_metadata(table)["stats"]
    assert stats["tokens"] == sum(table["num_tokens"].to_pylist()) and stats["tokens_per_s"] > 0


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_same_rows(
    tmp_path, write_params, problems_file, smollm2_dir
):
    params = _params(write_params, "hf")
    full = tmp_path / "full.arrow"
    run_rwpipe("rollout", problems_file, smollm2_dir, full, "--params", params)

    out = tmp_path / "resumed.arrow"
    parts = out.with_name(out.name + ".parts")
    cmd = [
        sys.executable,
        "-c",
        CLI,
        "rollout",
        str(problems_file),
        str(smollm2_dir),
        str(out),
        "--params",
        str(params),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("shard-*.arrow"))) < 2:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and 2 <= len(list(parts.glob("shard-*.arrow"))) < 4

    result = run_rwpipe("rollout", problems_file, smollm2_dir, out, "--params", params)
    assert "resumed_shards" in result.stderr
    a = artifacts.read_artifact(full, "rollouts").drop_columns(["seed"])
    b = artifacts.read_artifact(out, "rollouts").drop_columns(["seed"])
    assert a.select(["problem_id", "sample_idx"]).equals(b.select(["problem_id", "sample_idx"]))
    assert a.equals(b)  # no row lost, duplicated or changed


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(tmp_path, write_params, problems_file, smollm2_dir):
    params = _params(write_params, "hf")
    out = tmp_path / "r.arrow"

    def fails(*args, expect: str) -> None:
        result = run_rwpipe("rollout", *args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expect in lines[0], result.stderr
        assert not out.exists()

    fails(
        problems_file,
        tmp_path / "no-model",
        out,
        "--params",
        params,
        expect="not a model directory",
    )
    fails(tmp_path / "none.arrow", smollm2_dir, out, "--params", params, expect="no such file")
    fails(
        problems_file,
        smollm2_dir,
        out,
        "--params",
        write_params({"rollout": {"sampling": {"nn": 1}}}),
        expect="unknown key 'nn'",
    )
    eval_only = _params(write_params, "hf", splits=["eval"])
    empty = tmp_path / "empty.arrow"
    table = artifacts.read_artifact(problems_file, "problems")
    artifacts.write_artifact(
        table.filter(pa.array([s == "train" for s in table["split"].to_pylist()])),
        empty,
        "problems",
    )
    fails(empty, smollm2_dir, out, "--params", eval_only, expect="no problems in split(s) eval")
    blank = tmp_path / "blank.arrow"
    rows = table.to_pylist()
    rows[0]["question"] = " "
    loose = pa.schema([f.with_nullable(True) for f in table.schema])
    bad = pa.Table.from_pylist(rows, schema=loose).replace_schema_metadata(table.schema.metadata)
    with pa.OSFile(str(blank), "wb") as sink, pa.ipc.new_file(sink, bad.schema) as w:
        w.write_table(bad)
    fails(blank, smollm2_dir, out, "--params", params, expect="column question has an empty value")
