"""One RL run's components, built from params: this process's data-parallel place, the policy,
the reward models, the implicit PRM and the engine; `Session.train` drives the loop."""

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from rwpipe.backends import Generator, load_engine
from rwpipe.config import BaseConfig, RLConfig
from rwpipe.rl.loop import RLState, run_rl
from rwpipe.rl.parallel import DataParallel
from rwpipe.rl.policy import Policy, load_policy_model
from rwpipe.runtime import resolve_dtype, seed_everything
from rwpipe.train.loop import Checkpointer


@dataclass
class Session:
    """Everything an RL run holds while it trains."""

    cfg: RLConfig
    base: BaseConfig
    dp: DataParallel
    policy: Policy
    generator: Generator
    orm: Any = None  # rwpipe.score.Scorer
    prm: Any = None  # rwpipe.score.Scorer
    implicit: Any = None  # rwpipe.train.backbone.Backbone (PRIME)

    def train(self, problems: pa.Table, checkpointer: Checkpointer) -> RLState:
        """Run the loop on `problems` (a progress bar on rank 0), then close the engine."""
        from rwpipe.progress import progress_bar
        from rwpipe.steps import StepRule
        from rwpipe.verify import VerifierPool

        main = self.dp.main
        bar = progress_bar(self.cfg.steps, "rl", "steps") if main else contextlib.nullcontext()
        try:
            with VerifierPool() as verifier, bar as advance:
                return run_rl(
                    problems, self.policy, self.generator, self.cfg,
                    seed=rl_seed(self.cfg, self.base), checkpointer=checkpointer,
                    split_steps=StepRule.from_config(self.base).split,
                    verifier=verifier, orm=self.orm, prm=self.prm, implicit=self.implicit,
                    advance=advance, dp=self.dp,
                )  # fmt: skip
        finally:
            self.generator.close()


def rl_seed(cfg: RLConfig, base: BaseConfig) -> int:
    """`rl.seed`, or the base seed where it is not set."""
    return base.seed if cfg.seed is None else cfg.seed


def open_session(cfg: RLConfig, base: BaseConfig, policy_dir: Path, *, orm: Path | None = None,
                 prm: Path | None = None) -> Session:  # fmt: skip
    """Set up data parallelism (under `accelerate launch` / `torchrun`), seed, pick the device
    and dtype, and load the policy, the reward models in use and the engine."""
    from rwpipe.score import Scorer

    dp = DataParallel.from_env()
    seed_everything(rl_seed(cfg, base))
    device = dp.device(base.device)
    dtype = resolve_dtype(cfg.dtype, device)
    policy = load_policy_model(policy_dir, cfg, device, dtype)
    orm_scorer = Scorer(orm, device=device, dtype=dtype) if orm else None
    prm_scorer = Scorer(prm, device=device, dtype=dtype) if prm else None
    implicit = None
    if cfg.rewards.implicit_prm:
        from rwpipe.train.backbone import load_backbone

        implicit = load_backbone(policy_dir, "implicit_prm", device=device, dtype=dtype,
                                 lora=cfg.lora, beta=cfg.rewards.implicit_beta,
                                 pad_multiple=cfg.optim.pad_to_multiple_of)  # fmt: skip
        implicit.model.eval()
    # one engine per process; vLLM on GPUs joins torchrun's world (TP inside each rank's group)
    extra = {"distributed_executor_backend": "external_launcher"} if (
        dp.world > 1 and device.type == "cuda") else None  # fmt: skip
    generator = load_engine(policy_dir, cfg.engine, device=base.device, seed=rl_seed(cfg, base),
                            extra=extra)  # fmt: skip
    return Session(cfg, base, dp, policy, generator, orm_scorer, prm_scorer, implicit)
