"""Digests of the local files params.yaml names, so that DVC re-runs the stages reading them.

A param such as `prepare.train: data/gsm8k/train.jsonl` names a file DVC cannot depend on
directly: dvc.yaml's deps are fixed paths, and the same param may instead say `synthetic` or
`hf:openai/gsm8k`. The `inputs` stage (always run; it only hashes files) writes one small JSON
per consuming stage, `<out_dir>/<stage>.json`, holding each such param's value and a sha256
per file it names. A JSON is rewritten only when its content changes, so its DVC hash is
stable, and `prepare` / `eval` / `model` depend on theirs: editing a named file re-runs exactly
the stages that read it.

The `rl_rewards` stage does the same for the reward models rl reads (`rl_reward_models`):
it depends on the trained ORM and PRM, but records a model's digest only while its reward
weight is non-zero, so re-labelling and retraining the reward models does not re-run an RL
stage that never reads them (the default: verifiable reward only).

Imports nothing heavy (no torch): params, hashlib and json.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rwpipe.config import EvalConfig, ModelConfig, PrepareConfig, RLConfig, load_section
from rwpipe.errors import InputError

SYNTHETIC = "synthetic"  # prepare's built-in generator (rwpipe.prepare.SYNTHETIC)
LARGE = 1 << 20  # model.source files from this size on are digested by size and mtime
CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _stat(path: Path) -> str:
    st = path.stat()
    return f"stat:{st.st_size}:{st.st_mtime_ns}"


def digest_path(path: Path, large_by_stat: bool = False) -> dict[str, str]:
    """{file: digest} for a file, or for every file under a directory (sorted, as posix paths).

    `large_by_stat`: files of LARGE bytes or more get their size and mtime instead of a content
    hash (model weights: gigabytes, rewritten only when the model changes).
    """

    def one(p: Path) -> str:
        return _stat(p) if large_by_stat and p.stat().st_size >= LARGE else _sha256(p)

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {p.as_posix(): one(p) for p in files}
    return {path.as_posix(): one(path)}


def _missing(param: str, path: str) -> InputError:
    return InputError(f"{param}: {path}: no such file or directory")


def dataset(param: str, value: str) -> dict[str, Any]:
    """prepare.train / prepare.eval: `synthetic` and `hf:...` as they are, else a local path."""
    if value == SYNTHETIC or value.startswith("hf:"):
        return {"value": value}
    path = Path(value)
    if not path.exists():
        raise _missing(param, value)
    return {"value": value, "files": digest_path(path)}


def file_list(param: str, value: str) -> dict[str, Any]:
    """eval.processbench / eval.threshold_tune: comma-separated local files ("" = none); the
    shipped ProcessBench sample (`sample`, `sample:<subset>`: package data, a code dep of the
    eval stage) and `hf:` ids are recorded as they are."""
    paths = [
        p.strip() for p in value.split(",")
        if p.strip() and not p.strip().startswith(("hf:", "sample:")) and p.strip() != "sample"
    ]  # fmt: skip
    files: dict[str, str] = {}
    for p in paths:
        if not Path(p).exists():
            raise _missing(param, p)
        files |= digest_path(Path(p))
    return {"value": value, "files": files} if files else {"value": value}


def model_source(param: str, value: str) -> dict[str, Any]:
    """model.source: a local directory or file is digested; an alias or hub id is recorded as
    it is (the model stage says whether it resolves)."""
    path = Path(value).expanduser()
    if not path.exists():
        return {"value": value}
    return {"value": value, "files": digest_path(path, large_by_stat=True)}


def digest_inputs(params: str | Path) -> dict[str, dict[str, Any]]:
    """Consuming stage -> {"section.key": {"value": ..., "files": {path: digest}}}.

    Raises:
        ConfigError: a bad params section.
        InputError: a named local file that does not exist (one line: param and path).
    """
    model = load_section(params, "model", ModelConfig)
    prepare = load_section(params, "prepare", PrepareConfig)
    evaluate = load_section(params, "eval", EvalConfig)
    return {
        "model": {"model.source": model_source("model.source", model.source)},
        "prepare": {
            "prepare.train": dataset("prepare.train", prepare.train),
            "prepare.eval": dataset("prepare.eval", prepare.eval),
        },
        "eval": {
            "eval.processbench": file_list("eval.processbench", evaluate.processbench),
            "eval.threshold_tune": file_list("eval.threshold_tune", evaluate.threshold_tune),
            "eval.prmbench": file_list("eval.prmbench", evaluate.prmbench),
        },
    }


def rl_reward_models(
    params: str | Path, models: dict[str, Path | None]
) -> dict[str, dict[str, Any]]:
    """rl's reward models, {"rl.rewards.<name>": {"value": weight, "files": {path: digest}}}:
    a model whose weight is 0 is recorded by its weight alone (rl does not load it), so
    retraining it leaves this record, and the rl stage that depends on it, unchanged.

    Raises:
        InputError: a model with a non-zero weight that was not given or does not exist.
    """
    rewards = load_section(params, "rl", RLConfig).rewards
    record: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        param, weight = f"rl.rewards.{name}", getattr(rewards, name)
        record[param] = {"value": weight}
        if weight:
            if path is None or not path.exists():
                raise _missing(param, str(path) if path else f"--{name} DIR not given")
            record[param]["files"] = digest_path(path)
    return record


def render(record: dict[str, Any]) -> bytes:
    """The JSON bytes of one stage's record (stable: sorted keys, fixed layout)."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def write_inputs(out_dir: str | Path, params: str | Path) -> dict[str, bool]:
    """Write `<out_dir>/<stage>.json` for each consuming stage; returns stage -> rewritten.

    A file whose content would not change is left alone (same bytes, same mtime). All digests
    are computed before anything is written, so an error leaves the previous files in place.
    """
    out_dir = Path(out_dir)
    records = {stage: render(r) for stage, r in digest_inputs(params).items()}
    return {stage: write_if_changed(out_dir / f"{stage}.json", data)
            for stage, data in records.items()}  # fmt: skip


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically unless it already holds those bytes (then its mtime
    stays too); returns whether it was written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
