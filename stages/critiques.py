"""DVC stage `critiques`: verification critiques for a generative PRM from labels.arrow.

rwpipe critiques data/labels.arrow data/critiques.arrow [--judge-model DIR]
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, InFile, OutFile, ParamsOpt
from stages.report import print_summary

JudgeModelOpt = Annotated[
    Path | None,
    typer.Option(help="A local judge model (critiques.source judge without a server)."),
]


def critiques(
    labels: InFile, out: OutFile, *, judge_model: JudgeModelOpt = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Write step-by-step critiques of the labelled solutions (templated, or judge-sampled and
    kept where they agree with the labels): the generative PRM's training targets."""
    from rwpipe.critique import run

    stats = run(load_section(params, "critiques"), load_section(params, "base"), labels=labels,
                out=out, judge_model=judge_model)  # fmt: skip
    print_summary(f"critiques -> {out}", stats)
