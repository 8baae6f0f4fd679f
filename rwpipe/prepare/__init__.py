"""The `prepare` stage's library: train and eval problems with gold answers, plus statistics.

`build_problems(cfg, seed)` turns a `PrepareConfig` into rows of the `problems` artifact
(`rwpipe.schemas.PROBLEMS`). Sources are synthetic arithmetic (`synthetic.py`), local files or
hub datasets (`loaders.py`); `contamination.py` measures train/eval overlap. Nothing heavy is
imported here: `datasets` is imported only when a `hf:` input is loaded.
"""

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from rwpipe.config import PrepareConfig
from rwpipe.errors import ConfigError
from rwpipe.prepare.contamination import contamination_report
from rwpipe.prepare.loaders import LoadedRows, load_problems, read_rows, take_subset
from rwpipe.prepare.synthetic import generate_synthetic
from rwpipe.runtime import stable_seed

__all__ = [
    "build_problems", "contamination_report", "generate_synthetic", "load_problems", "run",
]  # fmt: skip

SYNTHETIC = "synthetic"
EVAL_FRACTION = 0.2  # share of a single input file that goes to eval when train == eval


def build_problems(cfg: PrepareConfig, seed: int) -> tuple[list[dict], dict]:
    """Build the train and eval problems of the `prepare` stage.

    Train rows come from `cfg.train`, eval rows from `cfg.eval`. Synthetic eval never repeats
    a train question. When both name the same file (or hub dataset and split), it is split
    80/20 by a hash of each question, so one question never lands in both splits.

    Args:
        cfg: the `prepare` section.
        seed: the base seed (`base.seed`); each split draws its own stream from it.

    Returns:
        (rows, stats): train rows then eval rows, with problem ids unique across splits;
        stats holds per-split counts by source and category, rows dropped for lack of a gold
        answer (per input) and the train/eval contamination report.

    Raises:
        InputError: an input cannot be read or has no usable rows.
        ConfigError: a synthetic split with n = 0.
    """
    train, eval_, train_ids = _load_splits(cfg, seed)
    eval_rows = _unique_eval_ids(train_ids, eval_.rows)
    rows = train.rows + eval_rows
    # Keyed by input: a single file split 80/20 is counted once.
    dropped = {cfg.eval: eval_.dropped, cfg.train: train.dropped}
    stats = {
        "train": _split_stats(train.rows),
        "eval": _split_stats(eval_rows),
        "dropped": dropped,
        "contamination": _contamination(train.rows, eval_rows),
    }
    return rows, stats


def run(cfg: PrepareConfig, base: Any, *, out: Path) -> dict:
    """Stage `prepare`: build the problems and write them to OUT; returns the stats."""
    import pyarrow as pa

    from rwpipe import artifacts

    rows, stats = build_problems(cfg, base.seed)
    artifacts.write_artifact(pa.Table.from_pylist(rows), out, "problems", section="prepare",
                             config=cfg, stats=stats)  # fmt: skip
    return stats


def _load_splits(cfg: PrepareConfig, seed: int) -> tuple[LoadedRows, LoadedRows, set[str]]:
    # Also returns the ids of the whole train input, so eval ids do not depend on n_train.
    train_seed, eval_seed = stable_seed(seed, "train"), stable_seed(seed, "eval")
    if cfg.train != SYNTHETIC and _same_input(cfg):
        everything = read_rows(cfg.train, "train", cfg.format, cfg.hf_train_split)
        train_all, eval_all = _hash_split(everything.rows)
        train = LoadedRows(take_subset(train_all, cfg.n_train, train_seed), everything.dropped)
        eval_ = LoadedRows(take_subset(eval_all, cfg.n_eval, eval_seed), 0)
        return train, eval_, {row["problem_id"] for row in train_all}
    train, train_ids = _load_one(cfg, "train", cfg.n_train, train_seed, frozenset())
    exclude = frozenset(row["question"] for row in train.rows)
    eval_, _ = _load_one(cfg, "eval", cfg.n_eval, eval_seed, exclude)
    return train, eval_, train_ids


def _load_one(
    cfg: PrepareConfig, split: str, n: int, seed: int, exclude: frozenset[str]
) -> tuple[LoadedRows, set[str]]:
    spec = cfg.train if split == "train" else cfg.eval
    if spec == SYNTHETIC:
        if n == 0:
            raise ConfigError(f"prepare: n_{split} must be > 0 for synthetic problems")
        rows = generate_synthetic(n, seed, cfg.synthetic.kinds, split, exclude)
        return LoadedRows(rows, 0), {row["problem_id"] for row in rows}
    hf_split = cfg.hf_train_split if split == "train" else cfg.hf_eval_split
    loaded = read_rows(spec, split, cfg.format, hf_split)
    subset = LoadedRows(take_subset(loaded.rows, n, seed), loaded.dropped)
    return subset, {row["problem_id"] for row in loaded.rows}


def _same_input(cfg: PrepareConfig) -> bool:
    if cfg.train.startswith("hf:") or cfg.eval.startswith("hf:"):
        return cfg.train == cfg.eval and cfg.hf_train_split == cfg.hf_eval_split
    if SYNTHETIC in (cfg.train, cfg.eval):
        return cfg.train == cfg.eval
    return Path(cfg.train).resolve() == Path(cfg.eval).resolve()


def _hash_split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    train, eval_ = [], []
    for row in rows:
        key = " ".join(row["question"].split()).encode()
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2**64
        if u < EVAL_FRACTION:
            eval_.append({**row, "split": "eval"})
        else:
            train.append(row)
    return train, eval_


def _unique_eval_ids(train_ids: set[str], eval_: list[dict]) -> list[dict]:
    # Two files with `<source>-<index>` ids (gsm8k train and test) collide; prefix the eval one.
    taken = set(train_ids)
    out = []
    for row in eval_:
        pid = row["problem_id"]
        while pid in taken:
            pid = f"eval-{pid}"
        taken.add(pid)
        out.append({**row, "problem_id": pid})
    return out


def _split_stats(rows: list[dict]) -> dict:
    return {
        "rows": len(rows),
        "by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
        "by_category": dict(sorted(Counter(str(r["category"]) for r in rows).items())),
    }


def _contamination(train: list[dict], eval_: list[dict]) -> dict:
    report = contamination_report([r["question"] for r in train], [r["question"] for r in eval_])
    for kind in ("exact", "ngram"):
        for example in report[kind]["examples"]:
            example["problem_id"] = eval_[example["index"]]["problem_id"]
    return report
