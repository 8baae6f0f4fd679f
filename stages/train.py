"""DVC stages `train_rm` and `train_prm`: reward models on labels.arrow.

rwpipe train-rm  data/labels.arrow data/models/smollm2-135m-instruct data/models/orm
rwpipe train-prm data/labels.arrow data/models/smollm2-135m-instruct data/models/prm
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, InFile, OutDir, ParamsOpt
from stages.report import print_summary

BaseModel = Annotated[
    Path, typer.Argument(help="Backbone model directory (usually the policy).", show_default=False)
]
ReportDir = Annotated[
    Path | None,
    typer.Option(help="Where metrics.json, loss.csv and loss.png go (default: OUT_DIR.report)."),
]
PairsOpt = Annotated[
    Path | None,
    typer.Option(help="Preference pairs (rwpipe pairs) for loss bt; default: drawn from LABELS."),
]


def _train(section: str, params: Path, **paths: Path | None) -> None:
    from rwpipe.train import run

    metrics = run(load_section(params, section), load_section(params, "base"), **paths)
    print_summary(f"{section} -> {paths['out']}", metrics)


def train_rm(
    labels: InFile, base_model: BaseModel, out: OutDir, *, report_dir: ReportDir = None,
    pairs: PairsOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Train an outcome reward model (Bradley-Terry on pairs, or pointwise on outcomes)."""
    _train("train_rm", params, labels=labels, base_model=base_model, out=out,
           report_dir=report_dir, pairs=pairs)  # fmt: skip


CritiquesOpt = Annotated[
    Path | None,
    typer.Option(help="Critiques (rwpipe critiques) for kind generative; default: templated "
                 "from LABELS. Other kinds do not read them."),
]  # fmt: skip


def train_prm(
    labels: InFile, base_model: BaseModel, out: OutDir, *, report_dir: ReportDir = None,
    critiques: CritiquesOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Train a process reward model (discriminative on step labels, implicit on outcomes, or
    generative on critiques)."""
    _train("train_prm", params, labels=labels, base_model=base_model, out=out,
           report_dir=report_dir, critiques=critiques)  # fmt: skip
