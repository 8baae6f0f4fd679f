"""DVC stage `annotate`: outcome and step labels for every rollout.

rwpipe annotate data/rollouts.arrow data/models/smollm2-135m-instruct data/labels.arrow
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, InFile, OutFile, ParamsOpt
from stages.report import print_summary

Completer = Annotated[
    Path,
    typer.Argument(
        help="Completer model directory (continues step prefixes; usually the policy).",
        show_default=False,
    ),
]


def annotate(
    rollouts: InFile, completer: Completer, out: OutFile, *, params: ParamsOpt = DEFAULT_PARAMS
) -> None:
    """Label rollouts: math-verify outcomes, then Math-Shepherd, OmegaPRM or judge step labels."""
    cfg = load_section(params, "annotate")
    from rwpipe.annotate import run

    stats = run(cfg, load_section(params, "base"), rollouts=rollouts, completer=completer, out=out)
    print_summary(f"annotate ({cfg.method}) -> {out}", stats)
