"""`rwpipe score`: outcome and step scores for every rollout from one reward model.

rwpipe score data/rollouts.arrow data/models/prm data/scores-prm.arrow
rwpipe score data/rollouts.arrow /models/math-shepherd-prm scores.arrow --format math_shepherd
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.errors import InputError
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
    table = artifacts.read_artifact(rollouts, ("rollouts", "labels"))  # both hold the steps
    if table.num_rows == 0:
        raise InputError(f"{rollouts}: no solutions to score")
    if not (reward_model / "config.json").is_file():
        raise InputError(f"{reward_model}: not a model directory (no config.json)")
    from rwpipe.progress import progress_bar
    from rwpipe.runtime import pick_device
    from rwpipe.score import Scorer, Solution

    scorer = Scorer(
        reward_model, fmt=format, device=pick_device(device), max_length=max_length,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    rows = table.to_pylist()
    results = []
    with progress_bar(len(rows), f"score ({scorer.format})", "solutions") as advance:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            sols = [Solution(r["question"], r["prompt"], r["steps"]) for r in chunk]
            results.extend(scorer.score(sols, batch_size))
            advance(len(chunk), 0)
    out_rows = [
        {
            "problem_id": r["problem_id"],
            "sample_idx": r["sample_idx"],
            "split": r["split"],
            "model": scorer.name,
            "kind": scorer.kind,
            "format": scorer.format,
            "outcome_score": outcome,
            "step_scores": steps,
        }  # fmt: skip
        for r, (outcome, steps) in zip(rows, results, strict=True)
    ]
    import pyarrow as pa

    artifacts.write_artifact(pa.Table.from_pylist(out_rows), out, "scores")
