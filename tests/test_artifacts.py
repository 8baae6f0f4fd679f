"""Artifact contract: round trip, metadata, atomic writes and every corruption case.

python -m pytest tests/test_artifacts.py -q
"""

import json

import pyarrow as pa
import pytest

from rwpipe import artifacts
from rwpipe.config import PrepareConfig
from rwpipe.errors import ArtifactError
from rwpipe.schemas import PROBLEMS, SCHEMA_VERSION


def _problems(n: int = 3) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "problem_id": f"p{i}",
                "split": "train" if i % 2 else "eval",
                "source": "synthetic",
                "question": f"What is {i} + 1?",
                "answer": str(i + 1),
                "solution": None,
                "category": "add",
                "level": 1,
            }
            for i in range(n)
        ]
    )


def test_round_trip_keeps_rows_schema_and_metadata(tmp_path):
    path = tmp_path / "problems.arrow"
    written = artifacts.write_artifact(
        _problems(), path, "problems", section="prepare", config=PrepareConfig(), stats={"rows": 3}
    )
    table = artifacts.read_artifact(path, "problems")
    assert table.equals(written)
    assert table.schema.remove_metadata().equals(PROBLEMS.schema)
    meta = artifacts.artifact_metadata(table)
    assert meta["artifact"] == "problems"
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["params_section"] == "prepare"
    assert meta["config"]["n_eval"] == PrepareConfig().n_eval
    assert meta["stats"] == {"rows": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["problems.arrow"]  # no temp left behind


def test_writes_are_deterministic(tmp_path):
    a, b = tmp_path / "a.arrow", tmp_path / "b.arrow"
    for path in (a, b):
        artifacts.write_artifact(_problems(), path, "problems", config=PrepareConfig())
    assert a.read_bytes() == b.read_bytes()


def test_extra_columns_are_dropped_and_order_fixed(tmp_path):
    table = _problems().append_column("junk", pa.array([1, 2, 3]))
    table = table.select(list(reversed(table.column_names)))
    out = artifacts.write_artifact(table, tmp_path / "p.arrow", "problems")
    assert out.column_names == PROBLEMS.schema.names


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda rows: rows[1].update(question=None), "null"),
        (lambda rows: rows[1].update(problem_id="p0"), "duplicate key"),
        (lambda rows: rows[1].update(split="test"), "column split has value 'test'"),
        (lambda rows: rows[1].update(level=-1), "column level has a value below 0"),
        (lambda rows: rows[1].update(question="   "), "column question has an empty value"),
        (lambda rows: [r.pop("answer") for r in rows], "missing column(s) answer"),
        (
            lambda rows: [r.update(level="hard") for r in rows],
            "does not match the 'problems' schema",
        ),
    ],
)
def test_write_rejects_invalid_rows(tmp_path, mutate, expected):
    rows = _problems().to_pylist()
    mutate(rows)
    path = tmp_path / "p.arrow"
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.write_artifact(pa.Table.from_pylist(rows), path, "problems")
    message = _one_line_error(excinfo)
    assert str(path) in message and expected in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_failed_write_keeps_previous_artifact(tmp_path):
    path = tmp_path / "p.arrow"
    artifacts.write_artifact(_problems(2), path, "problems")
    before = path.read_bytes()
    bad = _problems(3).to_pylist()
    bad[2]["problem_id"] = "p0"
    with pytest.raises(ArtifactError):
        artifacts.write_artifact(pa.Table.from_pylist(bad), path, "problems")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.arrow"]


def test_interrupted_write_keeps_previous_artifact(tmp_path, monkeypatch):
    """A crash while the bytes are written (disk full, kill) leaves the old file intact."""
    path = tmp_path / "p.arrow"
    artifacts.write_artifact(_problems(2), path, "problems")
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pa.ipc.RecordBatchFileWriter, "write_table", disk_full)
    with pytest.raises(OSError):
        artifacts.write_artifact(_problems(3), path, "problems")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.arrow"]


def test_read_missing_file(tmp_path):
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(tmp_path / "nope.arrow", "problems")
    assert "no such file" in _one_line_error(excinfo)


def test_read_truncated_file(tmp_path):
    path = tmp_path / "p.arrow"
    artifacts.write_artifact(_problems(), path, "problems")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    message = _one_line_error(excinfo)
    assert str(path) in message and "truncated or foreign" in message


def test_read_foreign_file(tmp_path):
    path = tmp_path / "p.arrow"
    path.write_text(json.dumps({"question": "hi"}))
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    assert "truncated or foreign" in _one_line_error(excinfo)


def test_read_arrow_without_rwpipe_metadata(tmp_path):
    path = tmp_path / "p.arrow"
    table = _problems()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    assert "not an rwpipe artifact" in _one_line_error(excinfo)


def test_read_wrong_artifact_name(tmp_path):
    path = tmp_path / "p.arrow"
    artifacts.write_artifact(_problems(), path, "problems")
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "rollouts")
    message = _one_line_error(excinfo)
    assert "is a 'problems' artifact, expected 'rollouts'" in message


def _rewrite(path, table, meta_update):
    meta = {**table.schema.metadata, **meta_update}
    table = table.replace_schema_metadata(meta)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def test_read_unsupported_schema_version(tmp_path):
    path = tmp_path / "p.arrow"
    table = artifacts.write_artifact(_problems(), path, "problems")
    _rewrite(path, table, {b"rwpipe.schema_version": b"99"})
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    assert "schema version 99" in _one_line_error(excinfo)


def test_read_null_in_non_nullable_field(tmp_path):
    """A file written by other code with a null where the schema forbids one."""
    path = tmp_path / "p.arrow"
    table = artifacts.write_artifact(_problems(), path, "problems")
    loose = pa.schema([f.with_nullable(True) for f in table.schema]).with_metadata(
        table.schema.metadata
    )
    rows = table.to_pylist()
    rows[0]["question"] = None
    _rewrite(path, pa.Table.from_pylist(rows, schema=loose), {})
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    message = _one_line_error(excinfo)
    assert str(path) in message and "null" in message


def test_read_schema_drift_missing_column(tmp_path):
    path = tmp_path / "p.arrow"
    table = artifacts.write_artifact(_problems(), path, "problems")
    _rewrite(path, table.drop_columns(["question"]), {})
    with pytest.raises(ArtifactError) as excinfo:
        artifacts.read_artifact(path, "problems")
    assert "missing column(s) question" in _one_line_error(excinfo)


def test_atomic_directory_replaces_whole_directory(tmp_path):
    out = tmp_path / "model"
    with artifacts.atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("1")
    with artifacts.atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError), artifacts.atomic_path(out) as tmp:
        tmp.mkdir()
        raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


class TestShardStore:
    def test_resume_skips_done_shards_and_finish_concatenates_in_order(self, tmp_path):
        out = tmp_path / "problems.arrow"
        store = artifacts.ShardStore(out, "problems", {"cfg": 1})
        table = _problems(4)
        store.write(1, table.slice(2, 2), {"rows": 2})
        again = artifacts.ShardStore(out, "problems", {"cfg": 1})
        assert again.done() == {1}
        again.write(0, table.slice(0, 2), {"rows": 2})
        assert again.stats() == [{"rows": 2}, {"rows": 2}]
        final = again.finish(2, section="prepare")
        assert final["problem_id"].to_pylist() == ["p0", "p1", "p2", "p3"]
        assert not again.dir.exists()
        assert artifacts.read_artifact(out, "problems").num_rows == 4

    def test_changed_fingerprint_starts_over(self, tmp_path):
        out = tmp_path / "problems.arrow"
        artifacts.ShardStore(out, "problems", {"cfg": 1}).write(0, _problems(2))
        assert artifacts.ShardStore(out, "problems", {"cfg": 2}).done() == set()

    def test_finish_refuses_missing_shards(self, tmp_path):
        store = artifacts.ShardStore(tmp_path / "p.arrow", "problems", {})
        store.write(1, _problems(2))
        with pytest.raises(ArtifactError, match=r"shards \[0\] missing"):
            store.finish(2)
        assert not (tmp_path / "p.arrow").exists()

    def test_shards_are_validated(self, tmp_path):
        store = artifacts.ShardStore(tmp_path / "p.arrow", "problems", {})
        rows = _problems(2).to_pylist()
        rows[0]["split"] = "dev"
        with pytest.raises(ArtifactError):
            store.write(0, pa.Table.from_pylist(rows))
        assert store.done() == set()


def test_path_digest_changes_with_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{}")
    first = artifacts.path_digest(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text('{"a": 1}')
    assert artifacts.path_digest(tmp_path / "d") != first
