"""`rwpipe score`: outcome and step scores for every rollout from one reward model.

rwpipe score data/rollouts.arrow data/models/prm data/scores-prm.arrow
rwpipe score data/rollouts.arrow /models/math-shepherd-prm scores.arrow --format math_shepherd
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from stages.options import InFile, OutFile

RewardModel = Annotated[
    Path,
    typer.Argument(help="Reward model directory (ours or an external PRM).", show_default=False),
]


def score(
    rollouts: InFile,
    reward_model: RewardModel,
    out: OutFile,
    *,
    format: Annotated[
        str, typer.Option(help="auto | rwpipe | math_shepherd | qwen_prm | trl_prm")
    ] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_length: Annotated[int, typer.Option(min=16)] = 2048,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    trust_remote_code: bool = False,
) -> None:
    """Score rollouts (or labels) with a reward model: one row per solution."""
    from rwpipe.score import run

    table = run(
        rollouts, reward_model, fmt=format, batch_size=batch_size, max_length=max_length,
        device=device, trust_remote_code=trust_remote_code,
    )  # fmt: skip
    artifacts.write_artifact(table, out, "scores")
