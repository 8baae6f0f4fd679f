"""Hardening matrix: every stage, each bad input -> exit 1, one line naming the problem, no output.

Each case runs `rwpipe` in a fresh interpreter, exactly as DVC does. The bad inputs are caught
before any model is loaded, so the matrix is fast; the model argument is a tiny random model.

python -m pytest tests/test_hardening.py -q
"""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from rwpipe import artifacts
from rwpipe.schemas import SPECS
from tests.conftest import ROOT, run_rwpipe

# stage -> (arguments: IN, MODEL, OUT placeholders; the artifact kind IN must be; its section)
STAGES = {
    "rollout": (["IN", "MODEL", "OUT.arrow"], "problems", "rollout"),
    "annotate": (["IN", "MODEL", "OUT.arrow"], "rollouts", "annotate"),
    "pairs": (["IN", "OUT.arrow"], "labels", "pairs"),
    "critiques": (["IN", "OUT.arrow"], "labels", "critiques"),
    "train-rm": (["IN", "MODEL", "OUT"], "labels", "train_rm"),
    "train-prm": (["IN", "MODEL", "OUT"], "labels", "train_prm"),
    "rl": (["IN", "MODEL", "OUT"], "problems", "rl"),
    "eval": (["IN", "OUT"], "rollouts", "eval"),
    # PROBLEMS: a valid problems artifact (the search reads the levels from it)
    "search": (["PROBLEMS", "IN", "MODEL", "MODEL", "OUT"], "rollouts", "search"),
    "score": (["IN", "MODEL", "OUT.arrow"], "rollouts", None),
    "probe": (["IN", "MODEL", "OUT.json"], "problems", "annotate"),
}
BAD = ["missing_file", "wrong_artifact", "empty_table", "schema_drift", "truncated", "garbage",
       "params_typo", "missing_model"]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from rwpipe.model.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


def _empty(kind: str) -> pa.Table:
    return SPECS[kind].schema.empty_table()


def _bad_input(kind: str, bad: str, where: Path) -> tuple[Path, str]:
    """Write the bad input for an artifact of `kind`; return it and what the error must say."""
    path = where / f"in-{bad}.arrow"
    if bad == "missing_file":
        return path, "no such file"
    if bad == "wrong_artifact":
        other = "pairs" if kind != "pairs" else "problems"
        artifacts.write_artifact(_empty(other), path, other)
        return path, f"is a '{other}' artifact"
    if bad == "empty_table":
        artifacts.write_artifact(_empty(kind), path, kind)
        return path, ""  # each stage words its own "nothing to do"
    if bad == "schema_drift":
        artifacts.write_artifact(_empty(kind), path, kind)
        table = artifacts.read_artifact(path, kind)
        drifted = table.drop_columns([table.column_names[1]])
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, drifted.schema) as w:
            w.write_table(drifted)
        return path, f"missing column(s) {table.column_names[1]}"
    if bad == "truncated":
        artifacts.write_artifact(_empty(kind), path, kind)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a readable Arrow file"
    if bad == "garbage":
        path.write_text('{"question": "a JSON line where Arrow belongs"}\n')
        return path, "not a readable Arrow file"
    raise AssertionError(bad)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("stage", list(STAGES))
def test_bad_input_is_one_line_exit_1_and_writes_nothing(stage, bad, tmp_path, model):
    template, kind, section = STAGES[stage]
    good = tmp_path / "good.arrow"
    artifacts.write_artifact(_empty(kind), good, kind)  # replaced below where the case needs
    params_data = yaml.safe_load((ROOT / "params.yaml").read_text())
    model_arg, expect_in = model, None
    if bad == "params_typo":
        if section is None:
            pytest.skip("score takes no params")
        params_data[section]["sead"] = 1
        in_path, expect = good, "unknown key 'sead'"
    elif bad == "missing_model":
        if "MODEL" not in template:
            pytest.skip("no model argument")
        in_path = _nonempty_input(kind, tmp_path)
        model_arg, expect = tmp_path / "no-model", "no-model"
    else:
        in_path, expect = _bad_input(kind, bad, tmp_path)
        expect_in = in_path
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_data, sort_keys=False))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    subs = {"IN": in_path, "MODEL": model_arg}
    if "PROBLEMS" in template:
        (tmp_path / "problems").mkdir()
        subs["PROBLEMS"] = _nonempty_input("problems", tmp_path / "problems")
    args = [subs.get(a, out_dir / a.replace("OUT", "result")) for a in template]
    if section is not None:
        args += ["--params", params]
    result = run_rwpipe(stage, *args, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert expect in lines[0], lines[0]
    if expect_in is not None:
        assert str(expect_in) in lines[0], lines[0]
    assert list(out_dir.iterdir()) == [], "partial output left behind"


def _nonempty_input(kind: str, where: Path) -> Path:
    """A valid input of `kind` (a train and an eval row): only the model argument is wrong."""
    values = {"problem_id": "p0", "split": "train", "question": "What is 1 + 2?", "answer": "3",
              "gold": "3", "pred": "3", "verdict": "correct", "finish_reason": "stop",
              "method": "verify", "status": "labelled", "steps": ["1 + 2 = 3"], "outcome": 1,
              "step_hard": [1], "step_soft": [1.0], "step_visits": [0]}  # fmt: skip
    default = {pa.types.is_string: "x", pa.types.is_integer: 0, pa.types.is_floating: 0.0,
               pa.types.is_list: []}  # fmt: skip
    schema = SPECS[kind].schema
    row = {}
    for f in schema:
        if f.name in values:
            row[f.name] = values[f.name]
        elif f.nullable:
            row[f.name] = None
        else:
            row[f.name] = next(v for test, v in default.items() if test(f.type))
    path = where / "one.arrow"
    rows = [row, row | {"problem_id": "p1", "split": "eval"}]
    artifacts.write_artifact(pa.Table.from_pylist(rows, schema=schema), path, kind)
    return path


def test_prepare_bad_sources_are_one_line_exit_1(tmp_path, write_params):
    """prepare reads user files, not artifacts: missing, malformed JSONL line, wrong columns,
    no usable rows."""
    cases = {
        "missing.jsonl": (None, "missing.jsonl"),
        "malformed.jsonl": ('{"question": "q", "answer": "1"}\n{"question": \n',
                            "malformed.jsonl:2: not valid JSON"),
        "drift.jsonl": (json.dumps({"text": "q", "label": 1}) + "\n", "columns found: label, text"),
        "empty.jsonl": ("", "empty.jsonl"),
    }  # fmt: skip
    for name, (text, expect) in cases.items():
        src = tmp_path / name
        if text is not None:
            src.write_text(text)
        params = write_params({"prepare": {"train": str(src), "n_train": 0}}, f"{name}.yaml")
        out = tmp_path / "out" / "problems.arrow"
        result = run_rwpipe("prepare", out, "--params", params, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, (name, result.stderr[-2000:])
        assert expect in lines[0], (name, lines[0])
        assert not out.exists() and not (tmp_path / "out").exists()


def test_a_full_disk_is_one_line_and_keeps_the_previous_artifact(tmp_path, write_params):
    """The write fails part-way (ENOSPC, simulated in the stage's own process): exit 1, one
    line, the artifact of the earlier run byte-identical, no temporary left."""
    import subprocess
    import sys

    out = tmp_path / "data" / "problems.arrow"
    run_rwpipe("prepare", out, "--params", write_params({"prepare": {"n_train": 3, "n_eval": 1}}))
    before = out.read_bytes()
    full_disk = (
        "import errno, sys, pyarrow as pa\n"
        "def full(*a, **k):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "pa.ipc.RecordBatchFileWriter.write_table = full\n"
        "from stages.cli import main\n"
        "sys.argv[0] = 'rwpipe'\n"
        "main()\n"
    )
    params = write_params({"prepare": {"n_train": 5, "n_eval": 2}}, "other.yaml")
    result = subprocess.run([sys.executable, "-c", full_disk, "prepare", str(out), "--params",
                             str(params)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert f"{out}: No space left on device" in lines[0] and "previous outputs stand" in lines[0]
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["problems.arrow"]
