"""DVC stage `rl`: GRPO-family fine-tuning of the policy; the policy, curves and metrics.

rwpipe rl data/problems.arrow data/models/smollm2-135m-instruct data/models/policy-rl \\
    --report-dir data/rl [--orm data/models/orm] [--prm data/models/prm]
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import BaseConfig, RLConfig, load_section
from rwpipe.rl import run
from stages.options import DEFAULT_PARAMS, InFile, OutDir, ParamsOpt
from stages.report import print_summary

Policy = Annotated[Path, typer.Argument(help="The policy to fine-tune.", show_default=False)]
ModelOpt = Annotated[
    Path | None, typer.Option(help="Reward model directory (used when its reward weight > 0).")
]
ReportDir = Annotated[
    Path | None,
    typer.Option(help="Where metrics.json, curves.csv and curves.png go (default: OUT.report)."),
]


def rl(
    problems: InFile, policy: Policy, out: OutDir, *, report_dir: ReportDir = None,
    orm: ModelOpt = None, prm: ModelOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Fine-tune the policy with on-policy RL (GRPO, Dr.GRPO, RLOO, REINFORCE++)."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "rl", RLConfig)
    metrics = run(cfg, base, problems=problems, policy=policy, out=out, report_dir=report_dir,
                  orm=orm, prm=prm)  # fmt: skip
    if metrics:  # empty on the other ranks of a data-parallel run
        print_summary(f"rl -> {out}", metrics)
