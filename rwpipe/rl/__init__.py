"""`rwpipe rl`: on-policy GRPO-family fine-tuning of the policy with verifiable, ORM, PRM and
online implicit-PRM (PRIME) rewards. `run` is the whole stage.

One step:

1. take `prompts_per_step` training problems (a seeded permutation per epoch, so the prompts
   of step s depend only on the seed and s);
2. sample a group of `group_size` completions per prompt through the Generator (vLLM by
   default; the engine gets the current weights, LoRA merged in, before every step but the
   first);
3. score them: math-verify outcome (1/0), ORM probability, PRM step scores, implicit-PRM step
   rewards, minus a length penalty; PRM rewards become per-step returns by the credit rule
   (`rwpipe.rl.advantages`);
4. advantages: the outcome estimator over each group, plus the group-baselined process
   advantages, per token;
5. `ppo_epochs` passes of the clipped surrogate (+ k3 KL to the reference when kl_coef > 0)
   over micro-batches, one optimizer step per pass; with PRIME the implicit PRM is first
   updated on the batch's outcome labels.

Tokens are the engine's own sampled ids (no re-tokenisation): the trainer computes log-probs
of exactly what was sampled. Checkpoints (every `checkpoint_every` steps and at the end) hold
the trainable weights, optimizer and scheduler states, RNG states and the history; the step's
sampling seed is `stable_seed(seed, "rl", step)`, so a run killed and resumed continues the
same curve (bit-exact with the transformers backend; vLLM's batched kernels may differ in
the last bits).

Modules: `session` (load what a run needs), `loop` (the steps), `sampling` (prompts and
completions), `rewards` (rewards to per-token advantages), `advantages` (the pure maths),
`update` (the gradient steps), `policy` (the model, its weight export and save), `parallel`
(data parallelism), `report` (summary and curves). This module imports none of them (nor
torch) until `run` is called.
"""

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from rwpipe import artifacts
from rwpipe.config import BaseConfig, RLConfig
from rwpipe.errors import InputError

__all__ = ["run"]


def _model_dir(path: Path | None, what: str, needed: bool) -> Path | None:
    """The reward model directory when its reward weight is non-zero, else None."""
    if not needed:
        return None
    if path is None:
        raise InputError(f"rl.rewards.{what} > 0 needs --{what} DIR")
    from rwpipe.score import detect_format

    detect_format(path)  # no config.json, a base model or an unreadable one: refused here
    return path


def _check_inputs(cfg: RLConfig, problems: Path, policy: Path, orm: Path | None,
                  prm: Path | None) -> tuple[pa.Table, Path | None, Path | None]:  # fmt: skip
    """The problems of `cfg.splits` and the reward model directories in use; every bad input
    is a one-line InputError (or ArtifactError) before anything heavy loads."""
    from rwpipe.rollout import select_problems

    table = artifacts.read_artifact(problems, "problems")
    selected = select_problems(table, cfg.splits, str(problems))
    artifacts.check_model_dir(policy, hint=True)
    orm = _model_dir(orm, "orm", cfg.rewards.orm != 0)
    return selected, orm, _model_dir(prm, "prm", cfg.rewards.prm != 0)


def _fingerprint(cfg: RLConfig, base: BaseConfig, **inputs: Path | None) -> str:
    """What a checkpoint must match to be resumed: the params and a digest of every input."""
    stamp: dict[str, Any] = {"base": base, "rl": cfg}
    stamp |= {k: artifacts.path_digest(v) if v else None for k, v in inputs.items()}
    return hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()


def run(
    cfg: RLConfig,
    base: BaseConfig,
    *,
    problems: Path,
    policy: Path,
    out: Path,
    report_dir: Path | None = None,
    orm: Path | None = None,
    prm: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune `policy` with on-policy RL on `problems`; write it to `out`, the curves to
    `report_dir`.

    A run killed part-way resumes from its checkpoints in `OUT.run` (removed at the end) when
    the params and inputs are unchanged. Under `accelerate launch` / `torchrun` every process
    trains a replica on its share of each step's prompts; rank 0 writes the outputs.

    Args:
        cfg: the rl section.
        base: the base section (seed, device, step rule).
        problems: the problems artifact; the rows of `cfg.splits` are trained on.
        policy: the model directory to fine-tune.
        out: where the policy goes (a transformers directory, LoRA merged, with
            rwpipe-policy.json).
        report_dir: metrics.json, curves.csv and curves.png (default: OUT.report).
        orm, prm: reward model directories, needed when their reward weight is non-zero.

    Returns:
        The summary metrics (first and last rewards, accuracy, KL, ...; totals); empty on the
        other ranks of a data-parallel run.

    Raises:
        InputError: a bad input (no problems in the splits, no model directory, a reward
            model missing), raised before any model loads.
    """
    selected, orm, prm = _check_inputs(cfg, problems, policy, orm, prm)
    fingerprint = _fingerprint(cfg, base, problems=problems, policy=policy, orm=orm, prm=prm)
    run_dir = out.with_name(out.name + ".run")  # checkpoints; removed when the run ends

    from rwpipe.rl.policy import save_policy
    from rwpipe.rl.report import summarize, write_report
    from rwpipe.rl.session import open_session
    from rwpipe.train.loop import Checkpointer

    session = open_session(cfg, base, policy, orm=orm, prm=prm)
    state = session.train(selected, Checkpointer(run_dir, fingerprint))
    if not session.dp.main:  # rank 0 writes the policy and the report
        return {}
    metrics = summarize(state)
    metrics["dtype"] = str(next(session.policy.model.parameters()).dtype).removeprefix("torch.")
    card = {"base_model": str(policy), "params": artifacts.config_to_dict(cfg),
            "metrics": metrics, "problems": str(problems)}  # fmt: skip
    write_report(report_dir or out.with_name(out.name + ".report"), state.history, metrics)
    save_policy(session.policy, out, card)
    shutil.rmtree(run_dir, ignore_errors=True)
    return metrics
