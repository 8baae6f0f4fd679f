"""DVC stage `rl`: GRPO-family fine-tuning of the policy; the policy, curves and metrics.

rwpipe rl data/problems.arrow data/models/smollm2-135m-instruct data/models/policy-rl \\
    --report-dir data/rl [--orm data/models/orm] [--prm data/models/prm]
"""

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import BaseConfig, RLConfig, load_section
from rwpipe.errors import InputError
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


def _check_model(path: Path | None, what: str, needed: bool) -> Path | None:
    if not needed:
        return None
    if path is None:
        raise InputError(f"rl.rewards.{what} > 0 needs --{what} DIR")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a model directory (no config.json)")
    return path


def rl(
    problems: InFile, policy: Policy, out: OutDir, *, report_dir: ReportDir = None,
    orm: ModelOpt = None, prm: ModelOpt = None, params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Fine-tune the policy with on-policy RL (GRPO, Dr.GRPO, RLOO, REINFORCE++)."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "rl", RLConfig)
    from rwpipe.backends import load_engine
    from rwpipe.rollout import select_problems

    selected = select_problems(
        artifacts.read_artifact(problems, "problems"), cfg.splits, str(problems)
    )
    if not (policy / "config.json").is_file():
        raise InputError(f"{policy}: not a model directory (no config.json); run `rwpipe model`")
    orm = _check_model(orm, "orm", cfg.rewards.orm != 0)
    prm = _check_model(prm, "prm", cfg.rewards.prm != 0)
    stamp = {
        "base": base, "rl": cfg, "problems": artifacts.path_digest(problems),
        "policy": artifacts.path_digest(policy),
        "orm": artifacts.path_digest(orm) if orm else None,
        "prm": artifacts.path_digest(prm) if prm else None,
    }  # fmt: skip
    fingerprint = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode())
    report = report_dir or out.with_name(out.name + ".report")
    run_dir = out.with_name(out.name + ".run")  # checkpoints; removed when the stage ends

    import torch

    from rwpipe.progress import progress_bar
    from rwpipe.rl import (
        DataParallel,
        RLCheckpointer,
        load_policy_model,
        run_rl,
        save_policy,
        summarize,
    )
    from rwpipe.rl.report import write_report
    from rwpipe.runtime import default_dtype, pick_device, seed_everything
    from rwpipe.score import Scorer
    from rwpipe.steps import StepRule
    from rwpipe.verify import VerifierPool

    dp = DataParallel.from_env()  # under `accelerate launch` / `torchrun`: data parallel
    seed_everything(base.seed)
    if dp.world > 1:
        from accelerate import PartialState

        device = PartialState().device
    else:
        device = pick_device(base.device)
    dtype = default_dtype(device) if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
    model = load_policy_model(policy, cfg, device, dtype)
    orm_scorer = Scorer(orm, device=device, dtype=dtype) if orm else None
    prm_scorer = Scorer(prm, device=device, dtype=dtype) if prm else None
    implicit = None
    if cfg.rewards.implicit_prm:
        from rwpipe.train.backbone import load_backbone

        implicit = load_backbone(policy, "implicit_prm", device=device, dtype=dtype,
                                 lora=cfg.lora, beta=cfg.rewards.implicit_beta)  # fmt: skip
        implicit.model.eval()
    # one engine per process; vLLM on GPUs joins torchrun's world (TP inside each rank's group)
    extra = {"distributed_executor_backend": "external_launcher"} if (
        dp.world > 1 and device.type == "cuda") else None  # fmt: skip
    generator = load_engine(policy, cfg.engine, device=base.device, seed=base.seed,
                            extra=extra)  # fmt: skip
    checkpointer = RLCheckpointer(run_dir, fingerprint.hexdigest())
    steps = StepRule.from_config(base)
    try:
        bar = progress_bar(cfg.steps, "rl", "steps") if dp.main else contextlib.nullcontext()
        with VerifierPool() as verifier, bar as advance:
            state = run_rl(
                selected, model, generator, cfg, seed=base.seed, checkpointer=checkpointer,
                split_steps=steps.split, verifier=verifier, orm=orm_scorer, prm=prm_scorer,
                implicit=implicit, advance=advance, dp=dp,
            )  # fmt: skip
    finally:
        generator.close()
    if not dp.main:  # rank 0 writes the policy and the report
        return
    metrics = summarize(state)
    card = {"base_model": str(policy), "params": artifacts.config_to_dict(cfg),
            "metrics": metrics, "problems": str(problems)}  # fmt: skip
    write_report(report, state.history, metrics)
    save_policy(model, out, card)
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    print_summary(f"rl -> {out}", metrics)
