"""DVC stage `annotate`: outcome and step labels for every rollout.

rwpipe annotate data/rollouts.arrow data/models/smollm2-135m-instruct data/labels.arrow
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import AnnotateConfig, BaseConfig, load_section
from rwpipe.errors import InputError
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
    """Label rollouts: math-verify outcomes, then Math-Shepherd or OmegaPRM step labels."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "annotate", AnnotateConfig)
    from rwpipe.annotate import run_annotate
    from rwpipe.backends import load_engine

    table = artifacts.read_artifact(rollouts, "rollouts")
    if table.num_rows == 0:  # before any engine starts
        raise InputError(f"{rollouts}: no rollouts to label")
    remote_judge = cfg.method == "judge" and bool(cfg.judge.base_url)
    sampling = cfg.method != "verify" and not remote_judge
    if sampling and not (completer / "config.json").is_file():
        raise InputError(f"{completer}: not a model directory (no config.json); run `rwpipe model`")
    fingerprint = {
        "base": base,
        "annotate": cfg,
        "rollouts": artifacts.path_digest(rollouts),
        "completer": artifacts.path_digest(completer) if sampling else None,
    }
    store = artifacts.ShardStore(out, "labels", fingerprint)
    generator = (
        load_engine(completer, cfg.engine, device=base.device, seed=base.seed) if sampling else None
    )
    judge = None
    if cfg.method in ("judge", "consensus"):
        from rwpipe.judge import LocalJudge, OpenAIJudge

        j = cfg.judge
        judge = (
            OpenAIJudge.from_config(j)
            if j.base_url else LocalJudge(generator)
        )  # fmt: skip
    try:
        num_shards, stats = run_annotate(
            table, generator, cfg, seed=base.seed, store=store, where=str(rollouts), judge=judge
        )
    finally:
        if generator is not None:
            generator.close()
    store.finish(num_shards, section="annotate", config=cfg, stats=stats)
    print_summary(f"annotate ({cfg.method}) -> {out}", stats)
