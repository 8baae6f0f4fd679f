"""DVC stages `train_rm` and `train_prm`: reward models on labels.arrow.

rwpipe train-rm  data/labels.arrow data/models/smollm2-135m-instruct data/models/orm
rwpipe train-prm data/labels.arrow data/models/smollm2-135m-instruct data/models/prm
"""

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import BaseConfig, TrainPRMConfig, TrainRMConfig, load_section
from rwpipe.errors import InputError
from stages.options import DEFAULT_PARAMS, InFile, OutDir, ParamsOpt
from stages.report import print_summary

BaseModel = Annotated[
    Path, typer.Argument(help="Backbone model directory (usually the policy).", show_default=False)
]
ReportDir = Annotated[
    Path | None,
    typer.Option(help="Where metrics.json, loss.csv and loss.png go (default: OUT_DIR.report)."),
]


def _train(section: str, cls: type, labels: Path, base_model: Path, out: Path, params: Path,
           report: Path | None, pairs: Path | None = None) -> None:  # fmt: skip
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, section, cls)
    table = artifacts.read_artifact(labels, "labels")
    if table.num_rows == 0:
        raise InputError(f"{labels}: no rows")
    if not (base_model / "config.json").is_file():
        raise InputError(f"{base_model}: not a model directory (no config.json)")
    from rwpipe.train import train_reward_model
    from rwpipe.train.report import write_report

    pairs_table = artifacts.read_artifact(pairs, "pairs") if pairs is not None else None
    stamp = {
        "base": base,
        section: cfg,
        "labels": artifacts.path_digest(labels),
        "model": artifacts.path_digest(base_model),
        "pairs": artifacts.path_digest(pairs) if pairs is not None else None,
    }
    fingerprint = hashlib.sha256(
        json.dumps(stamp, sort_keys=True, default=str).encode()
    ).hexdigest()
    state, metrics = train_reward_model(
        table, base_model, out, cfg, seed=base.seed, device=base.device, where=str(labels),
        fingerprint=fingerprint, pairs=pairs_table,
    )  # fmt: skip
    write_report(report or out.with_name(out.name + ".report"), state, metrics)
    print_summary(f"{section} -> {out}", metrics)


PairsOpt = Annotated[
    Path | None,
    typer.Option(help="Preference pairs (rwpipe pairs) for loss bt; default: drawn from LABELS."),
]


def train_rm(
    labels: InFile, base_model: BaseModel, out: OutDir, *, report_dir: ReportDir = None,
    pairs: PairsOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Train an outcome reward model (Bradley-Terry on pairs, or pointwise on outcomes)."""
    _train("train_rm", TrainRMConfig, labels, base_model, out, params, report_dir, pairs)


def train_prm(
    labels: InFile, base_model: BaseModel, out: OutDir, *, report_dir: ReportDir = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Train a process reward model (discriminative on step labels, or implicit)."""
    _train("train_prm", TrainPRMConfig, labels, base_model, out, params, report_dir)
