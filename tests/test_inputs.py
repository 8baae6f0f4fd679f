"""The `inputs` and `rl_rewards` stages: digests of what params.yaml names (rwpipe/inputs.py).

python -m pytest tests/test_inputs.py -q
"""

import json
import subprocess
import sys
from unittest.mock import ANY

import pytest

from rwpipe.errors import InputError
from rwpipe.inputs import digest_inputs, write_inputs
from tests.conftest import ROOT, run_rwpipe


def test_a_changed_file_changes_its_stage_json_only(tmp_path, write_params):
    train = tmp_path / "train.jsonl"
    train.write_text('{"question": "1+1", "answer": "2"}\n')
    pb = tmp_path / "pb"
    pb.mkdir()
    (pb / "gsm8k.json").write_text("[]")
    (pb / "math.json").write_text("[]")
    params = write_params({
        "prepare": {"train": str(train), "eval": "hf:openai/gsm8k:main"},
        "eval": {"processbench": f"{pb / 'gsm8k.json'}, {pb / 'math.json'}"},
    })  # fmt: skip
    out = tmp_path / "inputs"
    assert write_inputs(out, params) == {"model": True, "prepare": True, "eval": True}
    prepare = json.loads((out / "prepare.json").read_text())
    assert prepare["prepare.eval"] == {"value": "hf:openai/gsm8k:main"}  # recorded as it is
    assert list(prepare["prepare.train"]["files"]) == [train.as_posix()]
    assert json.loads((out / "model.json").read_text()) == {
        "model.source": {"value": "smollm2-135m-instruct"}  # an alias: as it is
    }
    assert len(json.loads((out / "eval.json").read_text())["eval.processbench"]["files"]) == 2
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}

    # nothing changed: nothing rewritten, same bytes and mtimes (DVC's hash is stable)
    assert write_inputs(out, params) == {"model": False, "prepare": False, "eval": False}
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before

    train.write_text('{"question": "2+2", "answer": "4"}\n')
    assert write_inputs(out, params) == {"model": False, "prepare": True, "eval": False}
    assert (out / "prepare.json").read_bytes() != before["prepare.json"][0]
    (pb / "math.json").write_text('[{"problem": "p", "steps": ["s"], "label": -1}]')
    assert write_inputs(out, params) == {"model": False, "prepare": False, "eval": True}


def test_a_directory_and_a_local_model_source_are_digested(tmp_path, write_params):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.parquet").write_bytes(b"a")
    (data / "sub" / "b.parquet").write_bytes(b"b")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    params = write_params({
        "prepare": {"eval": str(data)}, "model": {"source": str(model)},
        "eval": {"processbench": "sample", "threshold_tune": "", "prmbench": ""},
    })  # fmt: skip
    got = digest_inputs(params)
    assert sorted(got["prepare"]["prepare.eval"]["files"]) == [
        (data / "a.parquet").as_posix(), (data / "sub" / "b.parquet").as_posix(),
    ]  # fmt: skip
    assert list(got["model"]["model.source"]["files"]) == [(model / "config.json").as_posix()]
    assert got["prepare"]["prepare.train"] == {"value": "synthetic"}
    assert got["eval"] == {
        "eval.processbench": {"value": "sample"}, "eval.threshold_tune": {"value": ""},
        "eval.prmbench": {"value": ""},
    }  # fmt: skip


def test_processbench_sample_and_hub_ids_are_recorded_local_files_digested(tmp_path, write_params):
    local = tmp_path / "pb.json"
    local.write_text("[]")
    spec = f"sample, sample:math,hf:Qwen/ProcessBench:gsm8k,{local}"
    got = digest_inputs(write_params({"eval": {"processbench": spec}}))["eval"]
    assert got["eval.processbench"] == {"value": spec, "files": {local.as_posix(): ANY}}
    with pytest.raises(InputError, match="eval.processbench: .*missing.json: no such file"):
        digest_inputs(write_params({"eval": {"processbench": f"sample,{tmp_path}/missing.json"}}))


@pytest.mark.parametrize(
    ("section", "key", "value", "missing"),
    [
        ("prepare", "train", "no/such/train.jsonl", "no/such/train.jsonl"),
        ("prepare", "eval", "missing-dir", "missing-dir"),
        ("eval", "threshold_tune", "{ok}, gone.json", "gone.json"),
        ("eval", "prmbench", "no/prmbench.jsonl", "no/prmbench.jsonl"),
    ],
)
def test_a_missing_named_file_is_one_line_naming_param_and_path(
    tmp_path, write_params, section, key, value, missing
):
    ok = tmp_path / "ok.json"
    ok.write_text("[]")
    params = write_params({section: {key: value.format(ok=ok)}})
    with pytest.raises(InputError) as info:
        write_inputs(tmp_path / "inputs", params)
    message = str(info.value)
    assert f"{section}.{key}" in message and missing in message and "\n" not in message
    assert not (tmp_path / "inputs").exists()  # nothing written


def test_the_cli_writes_the_jsons_and_fails_in_one_line(tmp_path, write_params):
    out = tmp_path / "inputs"
    run_rwpipe("inputs", out, "--params", write_params())
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "model.json", "prepare.json"]
    bad = write_params({"prepare": {"train": str(tmp_path / "nope.jsonl")}}, name="bad.yaml")
    result = run_rwpipe("inputs", out, "--params", bad, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "prepare.train" in result.stderr


def test_the_stage_imports_no_torch(tmp_path, write_params):
    params = write_params()
    code = (
        "import sys; from stages.inputs import inputs; "
        f"inputs({str(tmp_path / 'out')!r}, params={str(params)!r}); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def _model(root, name: str):
    model = root / name
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    return model


def test_rl_records_a_reward_model_only_while_its_weight_is_nonzero(tmp_path, write_params):
    orm, prm = _model(tmp_path, "orm"), _model(tmp_path, "prm")
    out = tmp_path / "inputs" / "rl.json"
    unused = write_params({"rl": {"rewards": {"verifiable": 1.0}}}, name="unused.yaml")
    run_rwpipe("rl-rewards", out, "--orm", orm, "--prm", prm, "--params", unused)
    assert json.loads(out.read_text()) == {
        "rl.rewards.orm": {"value": 0.0}, "rl.rewards.prm": {"value": 0.0}
    }  # fmt: skip
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    # retrained reward models that rl does not read: the record, bytes and mtime, stays
    (orm / "model.safetensors").write_bytes(b"retrained")
    (prm / "model.safetensors").write_bytes(b"retrained")
    run_rwpipe("rl-rewards", out, "--orm", orm, "--prm", prm, "--params", unused)
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before

    used = write_params({"rl": {"rewards": {"prm": 0.5}}}, name="used.yaml")
    run_rwpipe("rl-rewards", out, "--orm", orm, "--prm", prm, "--params", used)
    record = json.loads(out.read_text())
    assert record["rl.rewards.orm"] == {"value": 0.0}
    assert record["rl.rewards.prm"]["value"] == 0.5
    assert set(record["rl.rewards.prm"]["files"]) == {
        (prm / "config.json").as_posix(), (prm / "model.safetensors").as_posix()
    }  # fmt: skip
    digested = out.read_bytes()
    (prm / "model.safetensors").write_bytes(b"retrained again")  # a model rl reads: a new record
    run_rwpipe("rl-rewards", out, "--orm", orm, "--prm", prm, "--params", used)
    assert out.read_bytes() != digested
    (orm / "model.safetensors").write_bytes(b"not read")  # weight 0: no change
    after = out.read_bytes()
    run_rwpipe("rl-rewards", out, "--orm", orm, "--prm", prm, "--params", used)
    assert out.read_bytes() == after


def test_rl_a_used_reward_model_that_is_missing_is_one_line_and_nothing_written(
    tmp_path, write_params
):
    out = tmp_path / "inputs" / "rl.json"
    params = write_params({"rl": {"rewards": {"orm": 1.0}}})
    for extra in ((), ("--orm", tmp_path / "nope")):
        result = run_rwpipe("rl-rewards", out, *extra, "--params", params, check=False)
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0 and "rl.rewards.orm" in result.stderr
        assert not out.exists()
    with pytest.raises(InputError, match="nope"):
        from rwpipe.inputs import rl_reward_models

        rl_reward_models(params, {"orm": tmp_path / "nope", "prm": None})
