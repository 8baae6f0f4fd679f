"""DVC stage `eval`: policy accuracy, best-of-N and weighted-vote curves with the trained
reward models, PRM-guided beam search, ProcessBench for the PRM and a critic; metrics.json,
bon.csv, bon.png, report.md (all in `rwpipe.eval.run`).

rwpipe eval data/rollouts.arrow data/eval --orm data/models/orm --prm data/models/prm
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import BaseConfig, EvalConfig, load_section
from stages.options import DEFAULT_PARAMS, InFile, OutDir, ParamsOpt
from stages.report import print_summary

ModelOpt = Annotated[Path | None, typer.Option(help="Reward model directory.")]
RLRollouts = Annotated[
    Path | None,
    typer.Option(help="Rollouts of the RL policy on the same split: compared with the base."),
]
CriticOpt = Annotated[
    Path | None,
    typer.Option(help="A model to evaluate as a ProcessBench critic (with eval.processbench)."),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(help="Policy model for PRM-guided beam search (with eval.search.problems > 0)."),
]
SearchBudgetOpt = Annotated[
    Path | None,
    typer.Option(help="The search stage's metrics.json: every method at every budget, reported."),
]


def evaluate(
    rollouts: InFile, out: OutDir, *, orm: ModelOpt = None, prm: ModelOpt = None,
    rl_rollouts: RLRollouts = None, policy: PolicyOpt = None, critic: CriticOpt = None,
    search_budget: SearchBudgetOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Evaluate the policy's rollouts and the reward models; write metrics, curves, report."""
    from rwpipe.eval import run

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "eval", EvalConfig)
    metrics = run(
        cfg, base, rollouts=rollouts, out=out, orm=orm, prm=prm, rl_rollouts=rl_rollouts,
        policy=policy, critic=critic, search_budget=search_budget,
    )  # fmt: skip
    top = metrics["best_of_n_size"]
    best = {f"N={top} {k}": round(v, 3) for k, v in metrics["best_of_n"].items()}
    print_summary(f"eval -> {out}", metrics["policy"] | best)
