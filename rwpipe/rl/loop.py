"""The RL loop: sample, score, update, record, checkpoint, for `cfg.steps` steps, resuming a
matching checkpoint (the one `rwpipe.train.loop.Checkpointer` of every trainer)."""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from rwpipe.backends import Generator
from rwpipe.config import RLConfig
from rwpipe.errors import InputError
from rwpipe.rl.parallel import DataParallel
from rwpipe.rl.policy import Policy
from rwpipe.rl.rewards import Scored, score_batch, token_advantages, token_steps
from rwpipe.rl.sampling import Batch, sample_batch, step_prompts
from rwpipe.rl.update import train_step, update_implicit_prm
from rwpipe.runtime import stable_seed
from rwpipe.train.loop import Checkpointer


@dataclass
class RLState:
    step: int = 0  # optimizer steps (RL iterations) done
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per step
    tokens: int = 0  # generated tokens
    seconds: float = 0.0


def _trainables(policy: Policy, implicit: Any, cfg: RLConfig) -> tuple[dict, dict]:
    """The checkpointed models and optimizers: the policy's AdamW with linear warmup, and
    PRIME's optimizer for the implicit PRM."""
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    warmup = int(cfg.optim.warmup_ratio * cfg.steps * cfg.ppo_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    models: dict[str, Any] = {"policy": policy.model}
    optims: dict[str, Any] = {"optimizer": optimizer, "scheduler": scheduler}
    if implicit is not None:
        prm_params = [p for p in implicit.model.parameters() if p.requires_grad]
        optims["implicit_optimizer"] = torch.optim.AdamW(prm_params, lr=cfg.rewards.implicit_lr)
        models["implicit_prm"] = implicit.model
    return models, optims


def _prime_update(implicit: Any, optimizer: Any, batch: Batch, cfg: RLConfig, verifier: Any,
                  dp: DataParallel) -> float:  # fmt: skip
    """PRIME: update the implicit PRM on this batch's outcome labels (before it scores)."""
    verdicts = verifier.check(batch.golds, [c.text for c in batch.completions])
    examples = []
    for p, st, v in zip(batch.prompts, batch.steps, verdicts, strict=True):
        e = implicit.encode(p, st, cfg.optim.max_length)
        e.outcome = 1.0 if v.verdict == "correct" else 0.0
        examples.append(e)
    return update_implicit_prm(implicit, optimizer, examples, cfg.optim.batch_size,
                               cfg.optim.max_grad_norm, dp)  # fmt: skip


def _learn(batch: Batch, policy: Policy, optims: dict[str, Any], cfg: RLConfig, *,
           verifier: Any, orm: Any, prm: Any, implicit: Any,
           dp: DataParallel) -> tuple[Scored, dict[str, float]]:  # fmt: skip
    """Score the batch, turn the rewards into per-token advantages and update on them; returns
    the rewards and the step's statistics."""
    record: dict[str, float] = {}
    if implicit is not None:
        record["implicit_prm_loss"] = _prime_update(
            implicit, optims["implicit_optimizer"], batch, cfg, verifier, dp
        )
    scored = score_batch(cfg, batch.questions, batch.golds, batch.prompts, batch.completions,
                         batch.steps, verifier=verifier, orm=orm, prm=prm,
                         implicit=implicit)  # fmt: skip
    token_step = [token_steps(policy.tokenizer, c.token_ids, st)
                  for c, st in zip(batch.completions, batch.steps, strict=True)]  # fmt: skip
    adv = token_advantages(cfg, scored, cfg.group_size, token_step)
    prompt_ids = [policy.tokenizer.encode(p, add_special_tokens=False) for p in batch.prompts]
    stats = train_step(policy, optims["optimizer"], optims["scheduler"], cfg, prompt_ids,
                       batch.completions, adv, dp)  # fmt: skip
    return scored, stats | scored.extras | record


def _rss_gib() -> float:
    """This process's resident memory now, in GiB (psutil: a vLLM dependency)."""
    import psutil

    return psutil.Process().memory_info().rss / (1 << 30)


def _record(state: RLState, batch: Batch, scored: Scored, stats: dict[str, float], lr: float,
            start: float, dp: DataParallel, sync_seconds: float) -> int:  # fmt: skip
    """Count the step into `state` and append its record (averaged over processes) to the
    history, with the step's time split (weight sync to the engine, generation, the rest) and
    the process's memory; returns the tokens it generated (all processes)."""
    tokens = dp.total(sum(len(c.token_ids) for c in batch.completions))
    state.step += 1
    state.tokens += tokens
    seconds = time.perf_counter() - start
    state.seconds += seconds
    shared = dp.mean({
        "reward": float(np.mean(scored.outcome)),
        "accuracy": float(np.mean(scored.correct)),
        "length": float(np.mean([len(c.token_ids) for c in batch.completions])),
        "steps_per_solution": float(np.mean([len(st) for st in batch.steps])),
        **stats,
    })  # fmt: skip
    record = {
        "step": state.step,
        **{k: round(v, 6) for k, v in shared.items()},
        "lr": lr,
        "sync_seconds": round(sync_seconds, 3),
        "generate_seconds": round(batch.generate_seconds, 3),
        "seconds": round(seconds, 3),
        "rss_gib": round(_rss_gib(), 3),
    }
    state.history.append({k: round(v, 6) if isinstance(v, float) else v
                          for k, v in record.items()})  # fmt: skip
    return tokens


def run_rl(
    problems: pa.Table,
    policy: Policy,
    generator: Generator,
    cfg: RLConfig,
    *,
    seed: int,
    checkpointer: Checkpointer,
    split_steps: Callable[[str], list[str]],
    verifier: Any,
    orm: Any = None,
    prm: Any = None,
    implicit: Any = None,
    advance: Callable[[int, int], None] | None = None,
    stop_after_steps: int | None = None,
    dp: DataParallel | None = None,
) -> RLState:
    """Run `cfg.steps` RL steps on `problems` (resuming a matching checkpoint).

    Args:
        problems: the training problems (question, answer columns).
        policy: the model being trained (see `load_policy_model`).
        generator: the sampling engine; it must implement `update_weights`.
        cfg: the rl section.
        seed: the base seed; step s samples with `stable_seed(seed, "rl", s)`.
        checkpointer: where checkpoints go.
        split_steps: the step rule (`base.step_split`).
        verifier: a `VerifierPool`.
        orm, prm: `rwpipe.score.Scorer`s when their reward weights are non-zero.
        implicit: the PRIME implicit PRM (`rwpipe.train.backbone.Backbone`), or None.
        advance: progress callback (steps, tokens).
        stop_after_steps: stop after this many steps (checkpointed); for tests of resume.
        dp: this process's place in a data-parallel run (default: a single process); every
            process gets the same history, rank 0 writes the checkpoints.
    """
    dp = dp or DataParallel()
    if cfg.prompts_per_step % dp.world:
        raise InputError(f"rl.prompts_per_step {cfg.prompts_per_step} is not divisible by the "
                         f"{dp.world} processes")  # fmt: skip
    if problems.num_rows == 0:
        raise InputError("no training problems for rl")
    questions, golds = problems["question"].to_pylist(), problems["answer"].to_pylist()
    models, optims = _trainables(policy, implicit, cfg)
    torch.manual_seed(seed)
    random.seed(seed)
    state = checkpointer.load(models, optims, RLState) or RLState()
    synced = state.step == 0  # a fresh engine already holds the base weights
    while state.step < cfg.steps:
        start = time.perf_counter()
        if not synced:
            generator.update_weights(policy.merged_state_dict())
        synced, sync_seconds = False, time.perf_counter() - start
        picked = dp.share(step_prompts(len(questions), cfg.prompts_per_step, state.step, seed))
        sample_seed = stable_seed(seed, "rl", state.step, *([dp.rank] if dp.rank else []))
        batch = sample_batch(generator, cfg, questions, golds, picked, seed=sample_seed,
                             split_steps=split_steps)  # fmt: skip
        scored, stats = _learn(batch, policy, optims, cfg, verifier=verifier, orm=orm, prm=prm,
                               implicit=implicit, dp=dp)  # fmt: skip
        lr = optims["scheduler"].get_last_lr()[0]
        tokens = _record(state, batch, scored, stats, lr, start, dp, sync_seconds)
        if advance:
            advance(1, tokens)
        last = state.step in (cfg.steps, stop_after_steps)
        if last or state.step % cfg.optim.checkpoint_every == 0:
            if dp.main:
                checkpointer.save(models, optims, state)
            dp.barrier()
        if state.step == stop_after_steps:
            break
    return state
