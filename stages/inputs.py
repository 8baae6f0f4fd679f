"""DVC stages `inputs` and `rl_rewards`: digests of what params.yaml names (cheap).

rwpipe inputs data/inputs --params params.yaml
rwpipe rl-rewards data/inputs/rl.json --orm data/models/orm --prm data/models/prm
"""

from pathlib import Path
from typing import Annotated

import typer

from stages.options import DEFAULT_PARAMS, OutDir, ParamsOpt
from stages.report import print_summary

OutJson = Annotated[Path, typer.Argument(help="Output JSON.", show_default=False)]
RewardModel = Annotated[
    Path | None, typer.Option(help="Reward model directory (digested when its rl weight > 0).")
]


def inputs(out_dir: OutDir, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Hash the files that prepare.train/eval, eval.processbench/threshold_tune and a local
    model.source name into OUT_DIR/<stage>.json, rewriting a JSON only when it changes."""
    from rwpipe.inputs import write_inputs

    changed = write_inputs(out_dir, params)
    rows = {f"{out_dir}/{s}.json": "changed" if c else "unchanged" for s, c in changed.items()}
    print_summary(f"inputs -> {out_dir}", rows)


def rl_rewards(
    out: OutJson, *, orm: RewardModel = None, prm: RewardModel = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Record rl.rewards' ORM and PRM weights and, for each model rl reads (weight > 0), its
    files' digests into OUT (rewritten only when it changes): the rl stage depends on OUT, not
    on the models, so retraining a model it does not read leaves it up to date."""
    from rwpipe.inputs import render, rl_reward_models, write_if_changed

    record = rl_reward_models(params, {"orm": orm, "prm": prm})
    changed = write_if_changed(out, render(record))
    rows = {k: "digested" if "files" in v else f"weight {v['value']}: not read"
            for k, v in record.items()}  # fmt: skip
    print_summary(f"rl-rewards -> {out} ({'changed' if changed else 'unchanged'})", rows)
