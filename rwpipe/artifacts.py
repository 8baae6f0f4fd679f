"""Reading and writing artifacts: the only module that writes files.

Artifacts are Arrow IPC files (Feather v2, zstd-compressed buffers). Every write casts to the
declared schema, checks the artifact's invariants, attaches metadata and lands atomically
(temp file + `os.replace`): a reader sees the old file or the new one, never half of one.
Every read checks the same things and fails with one line naming the file and the problem.
"""

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rwpipe.errors import ArtifactError, InputError
from rwpipe.schemas import SCHEMA_VERSION, SPECS, SUPPORTED_VERSIONS, ArtifactSpec

META_ARTIFACT = b"rwpipe.artifact"
META_VERSION = b"rwpipe.schema_version"
META_SECTION = b"rwpipe.params_section"
META_CONFIG = b"rwpipe.config"
META_STATS = b"rwpipe.stats"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at `limit` characters, for error messages."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:limit]


def config_to_dict(config: Any) -> dict:
    """A config dataclass (or mapping) as plain JSON-able data."""
    if config is None:
        return {}
    if is_dataclass(config):
        return asdict(config)
    return dict(config)


# ----------------------------------------------------------------------------------------------
# Validation


def validate(table: pa.Table, name: str, where: str) -> pa.Table:
    """Cast `table` to artifact `name`'s schema and check its invariants.

    Args:
        table: the rows.
        name: artifact name, a key of `rwpipe.schemas.SPECS`.
        where: what to call the data in error messages (usually a file path).

    Returns:
        The table cast to the schema (without metadata).

    Raises:
        ArtifactError: a column is missing or null where it may not be, a value is out of range
            or not an allowed choice, or a key repeats.
    """
    spec = SPECS[name]
    missing = [f.name for f in spec.schema if f.name not in table.column_names]
    if missing:
        raise ArtifactError(f"{where}: missing column(s) {', '.join(missing)} for '{name}'")
    table = table.select(spec.schema.names)
    try:
        # Only cast() enforces non-nullable fields; from_pylist(schema=...) lets nulls through.
        table = table.cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        message = f"{where}: does not match the '{name}' schema: {one_line(exc)}"
        raise ArtifactError(message) from None
    _check_invariants(table, spec, name, where)
    return table


def _check_invariants(table: pa.Table, spec: ArtifactSpec, name: str, where: str) -> None:
    for col, allowed in spec.choices.items():
        bad = pc.filter(table[col], pc.invert(pc.is_in(table[col], pa.array(allowed))))
        bad = bad.drop_null()
        if len(bad):
            raise ArtifactError(
                f"{where}: column {col} has value {bad[0].as_py()!r}, allowed: {', '.join(allowed)}"
            )
    for col, (low, high) in spec.ranges.items():
        values = table[col]
        if pa.types.is_list(values.type):
            values = pc.list_flatten(values)
        if low is not None and pc.any(pc.less(values, low)).as_py():
            raise ArtifactError(f"{where}: column {col} has a value below {low}")
        if high is not None and pc.any(pc.greater(values, high)).as_py():
            raise ArtifactError(f"{where}: column {col} has a value above {high}")
    for col in spec.non_empty:
        if pc.any(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(table[col])), 0)).as_py():
            raise ArtifactError(f"{where}: column {col} has an empty value")
    if table.num_rows:
        counts = table.group_by(list(spec.key)).aggregate([([], "count_all")])
        dup = counts.filter(pc.greater(counts["count_all"], 1))
        if dup.num_rows:
            first = {k: dup[k][0].as_py() for k in spec.key}
            raise ArtifactError(f"{where}: duplicate key {first} in '{name}'")


# ----------------------------------------------------------------------------------------------
# Atomic files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it onto `path` in one step.

    Works for files and directories. On any exception the temporary is removed and `path`
    keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        try:
            yield target
        except OSError as exc:
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc  # name it
        if path.is_dir() and not path.is_symlink():
            old = tmp / ".old"
            os.replace(path, old)  # directories cannot be replaced in one rename
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ----------------------------------------------------------------------------------------------
# Artifacts


def write_artifact(
    table: pa.Table,
    path: str | os.PathLike,
    name: str,
    *,
    section: str = "",
    config: Any = None,
    stats: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Validate `table` as artifact `name` and write it atomically to `path`.

    Args:
        table: the rows; extra columns are dropped, columns are reordered to the schema.
        path: destination `.arrow` file.
        name: artifact name (`problems`, `rollouts`, ...).
        section: the params.yaml section that produced it.
        config: that section's dataclass, stored as JSON in the metadata.
        stats: run summary (counts, tokens, seconds) stored as JSON in the metadata.

    Returns:
        The table as written, with its metadata.
    """
    table = validate(table, name, str(path))
    meta = {
        META_ARTIFACT: name.encode(),
        META_VERSION: str(SCHEMA_VERSION).encode(),
        META_SECTION: section.encode(),
        META_CONFIG: json.dumps(config_to_dict(config), sort_keys=True, default=str).encode(),
        META_STATS: json.dumps(dict(stats or {}), sort_keys=True, default=str).encode(),
    }
    table = table.replace_schema_metadata(meta)
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with atomic_path(path) as tmp:
        with (
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, table.schema, options=options) as w,
        ):
            w.write_table(table)
    return table


def read_artifact(path: str | os.PathLike, name: str | tuple[str, ...]) -> pa.Table:
    """Read artifact `name` (or any of several kinds) from `path`, checking kind, version,
    schema and invariants.

    Raises:
        ArtifactError: one line naming `path` and what is wrong with it.
    """
    path = Path(path)
    names = (name,) if isinstance(name, str) else name
    expected = " or ".join(f"'{n}'" for n in names)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file (expected a {expected} artifact)")
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ArtifactError(
            f"{path}: not a readable Arrow file (truncated or foreign): {one_line(exc)}"
        ) from None
    meta = table.schema.metadata or {}
    found = meta.get(META_ARTIFACT)
    if found is None:
        raise ArtifactError(
            f"{path}: not an rwpipe artifact (no {META_ARTIFACT.decode()} metadata)"
        )
    name = found.decode()
    if name not in names:
        raise ArtifactError(f"{path}: is a '{name}' artifact, expected {expected}")
    version = meta.get(META_VERSION, b"?").decode()
    if not version.isdigit() or int(version) not in SUPPORTED_VERSIONS:
        raise ArtifactError(
            f"{path}: schema version {version} of '{name}' is not supported "
            f"(this rwpipe reads {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    return validate(table, name, str(path)).replace_schema_metadata(meta)


def artifact_metadata(table: pa.Table) -> dict[str, Any]:
    """The rwpipe metadata of a table returned by `read_artifact`/`write_artifact`, decoded."""
    meta = table.schema.metadata or {}
    return {
        "artifact": meta.get(META_ARTIFACT, b"").decode(),
        "schema_version": int(meta.get(META_VERSION, b"0")),
        "params_section": meta.get(META_SECTION, b"").decode(),
        "config": json.loads(meta.get(META_CONFIG, b"{}")),
        "stats": json.loads(meta.get(META_STATS, b"{}")),
    }


# ----------------------------------------------------------------------------------------------
# Resumable output in shards


class ShardStore:
    """Partial results of a long stage, kept beside its output so a killed run can resume.

    Shards live in `<out>.parts/` as `shard-<index>.arrow`, each validated and written
    atomically, plus `fingerprint.json`: what produced them (config, inputs). A run with the same
    fingerprint skips the shards already there; a different fingerprint starts over.
    `finish()` concatenates the shards in index order into the output artifact and removes the
    directory, so an interrupted and an uninterrupted run end with the same rows.
    """

    def __init__(self, out: str | os.PathLike, name: str, fingerprint: Mapping[str, Any]) -> None:
        self.out, self.name = Path(out), name
        self.dir = self.out.with_name(self.out.name + ".parts")
        self.fingerprint = json.loads(json.dumps(dict(fingerprint), sort_keys=True, default=str))
        stamp = self.dir / "fingerprint.json"
        if self.dir.exists():
            try:
                same = json.loads(stamp.read_text()) == self.fingerprint
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.dir)
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            write_json(self.fingerprint, stamp)

    def _path(self, index: int) -> Path:
        return self.dir / f"shard-{index:06d}.arrow"

    def done(self) -> set[int]:
        """Indices of the shards already written."""
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("shard-*.arrow")}

    def write(self, index: int, table: pa.Table, stats: Mapping[str, Any] | None = None) -> None:
        """Validate and atomically write shard `index`."""
        write_artifact(table, self._path(index), self.name, stats=stats)

    def read(self, index: int) -> pa.Table:
        return read_artifact(self._path(index), self.name)

    def stats(self) -> list[dict[str, Any]]:
        """The stats each shard was written with, in index order."""
        return [artifact_metadata(self.read(i))["stats"] for i in sorted(self.done())]

    def finish(self, num_shards: int, **write_kwargs: Any) -> pa.Table:
        """Write the output artifact from shards 0..num_shards-1 and remove the parts directory.

        Raises:
            ArtifactError: a shard is missing (a bug in the caller's loop).
        """
        missing = sorted(set(range(num_shards)) - self.done())
        if missing:
            raise ArtifactError(f"{self.dir}: shards {missing[:5]} missing, cannot finish")
        parts = [self.read(i).replace_schema_metadata(None) for i in range(num_shards)]
        schema = SPECS[self.name].schema
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        table = write_artifact(table, self.out, self.name, **write_kwargs)
        shutil.rmtree(self.dir, ignore_errors=True)
        return table


def check_model_dir(path: str | os.PathLike, *, hint: bool = False) -> None:
    """Refuse, before any model loads, a path that is not a transformers model directory.

    `hint` adds the command that builds one (for the policy, which `rwpipe model` writes).
    """
    if not (Path(path) / "config.json").is_file():
        tail = "; run `rwpipe model`" if hint else ""
        raise InputError(f"{path}: not a model directory (no config.json){tail}")


def path_digest(path: str | os.PathLike, full_bytes_below: int = 1 << 20) -> str:
    """A digest of a file or directory for resume fingerprints.

    Small files are hashed by content; large ones (model weights) by name, size and mtime,
    which is enough to notice a re-materialised model without reading gigabytes.
    """
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}".encode())
        if st.st_size < full_bytes_below:
            h.update(f.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()
