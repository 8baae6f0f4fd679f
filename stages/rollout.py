"""DVC stages `rollout` and `rollout_rl`: sample `rollout.sampling.n` solutions per problem.

rwpipe rollout data/problems.arrow data/models/smollm2-135m-instruct data/rollouts.arrow
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import load_section
from rwpipe.errors import InputError
from stages.options import DEFAULT_PARAMS, InFile, OutFile, ParamsOpt
from stages.report import print_summary

ModelDir = Annotated[Path, typer.Argument(help="Policy model directory.", show_default=False)]
SplitsOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated splits, overriding rollout.splits (e.g. eval)."),
]


def rollout(
    problems: InFile, model_dir: ModelDir, out: OutFile, *, splits: SplitsOpt = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Sample solutions for the selected splits, split them into steps and verify them."""
    cfg = load_section(params, "rollout")
    if splits is not None:
        chosen = tuple(s.strip() for s in splits.split(",") if s.strip())
        if not chosen or any(s not in ("train", "eval") for s in chosen):
            raise InputError(f"--splits {splits!r}: expected train, eval or train,eval")
        cfg = dataclasses.replace(cfg, splits=chosen)
    from rwpipe.rollout import run

    stats = run(cfg, load_section(params, "base"), problems=problems, model_dir=model_dir, out=out)
    print_summary(f"rollout -> {out}", stats)
