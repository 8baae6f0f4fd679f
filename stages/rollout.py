"""DVC stage `rollout`: sample `rollout.sampling.n` solutions per problem with the policy.

rwpipe rollout data/problems.arrow data/models/smollm2-135m-instruct data/rollouts.arrow
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import BaseConfig, RolloutConfig, load_section
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
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "rollout", RolloutConfig)
    if splits is not None:
        chosen = tuple(s.strip() for s in splits.split(",") if s.strip())
        if not chosen or any(s not in ("train", "eval") for s in chosen):
            raise InputError(f"--splits {splits!r}: expected train, eval or train,eval")
        cfg = dataclasses.replace(cfg, splits=chosen)
    from rwpipe.backends import load_engine
    from rwpipe.rollout import run_rollout, select_problems
    from rwpipe.steps import StepRule

    selected = select_problems(
        artifacts.read_artifact(problems, "problems"), cfg.splits, str(problems)
    )
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a model directory (no config.json); run `rwpipe model`")
    fingerprint = {
        "base": base,
        "rollout": cfg,
        "problems": artifacts.path_digest(problems),
        "model": artifacts.path_digest(model_dir),
    }
    store = artifacts.ShardStore(out, "rollouts", fingerprint)
    generator = load_engine(model_dir, cfg.engine, device=base.device, seed=base.seed)
    try:
        steps = StepRule.from_config(base)
        num_shards, stats = run_rollout(
            selected, generator, cfg, seed=base.seed, store=store, steps=steps
        )
    finally:
        generator.close()
    store.finish(num_shards, section="rollout", config=cfg, stats=stats)
    print_summary(f"rollout -> {out}", stats)
