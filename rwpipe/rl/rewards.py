"""From sampled completions to per-token advantages: every reward term of a batch
(`score_batch`), which step each token belongs to (`token_steps`), and the outcome plus
process advantage of each token (`token_advantages`)."""

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rwpipe.backends import Completion
from rwpipe.config import RLConfig
from rwpipe.rl.advantages import outcome_advantages, process_advantages, step_returns
from rwpipe.steps import Solution


@dataclass
class Scored:
    """Rewards of one step's completions, flat in (prompt, sample) order."""

    correct: list[float]
    outcome: list[float]  # combined scalar reward per completion
    step_rewards: list[list[float]]  # combined per-step process rewards (may be empty lists)
    extras: dict[str, float]


def score_batch(
    cfg: RLConfig,
    questions: Sequence[str],
    golds: Sequence[str],
    prompts: Sequence[str],
    completions: Sequence[Completion],
    steps: Sequence[Sequence[str]],
    *,
    verifier: Any,
    orm: Any = None,
    prm: Any = None,
    implicit: Any = None,
) -> Scored:
    """Every reward term of `cfg.rewards` for a flat batch of completions."""
    w = cfg.rewards
    verdicts = verifier.check(list(golds), [c.text for c in completions])
    correct = [1.0 if v.verdict == "correct" else 0.0 for v in verdicts]
    lengths = [len(c.token_ids) for c in completions]
    outcome = [
        w.verifiable * c - w.length_penalty * n / cfg.sampling.max_new_tokens
        for c, n in zip(correct, lengths, strict=True)
    ]
    extras: dict[str, float] = {}
    solutions = [Solution(q, p, s) for q, p, s in zip(questions, prompts, steps, strict=True)]
    if orm is not None and w.orm:
        got = [s for s, _ in orm.score(solutions)]
        extras["orm_score"] = float(np.mean([g or 0.0 for g in got]))
        outcome = [o + w.orm * (g or 0.0) for o, g in zip(outcome, got, strict=True)]
    step_rewards: list[list[float]] = [[0.0] * len(s) for s in steps]
    if prm is not None and w.prm:
        got = [st for _, st in prm.score(solutions)]
        extras["prm_step_score"] = _mean_step(got)
        step_rewards = _add(step_rewards, got, w.prm)
    if implicit is not None and w.implicit_prm:
        got = _implicit_step_rewards(implicit, solutions, cfg)
        extras["implicit_step_reward"] = _mean_step(got)
        step_rewards = _add(step_rewards, got, w.implicit_prm)
    return Scored(correct, outcome, step_rewards, extras)


def _implicit_step_rewards(implicit: Any, solutions: Sequence[Any],
                           cfg: RLConfig) -> list[list[float]]:  # fmt: skip
    examples = [implicit.encode(s.prompt, s.steps, cfg.optim.max_length) for s in solutions]
    size = cfg.optim.batch_size
    return [st for i in range(0, len(examples), size)
            for _, st in implicit.score(examples[i : i + size])]  # fmt: skip


def _mean_step(got: Sequence[Sequence[float]]) -> float:
    flat = [x for st in got for x in st]
    return float(np.mean(flat)) if flat else 0.0


def _add(acc: list[list[float]], got: Sequence[Sequence[float]], weight: float) -> list:
    out = []
    for a, g in zip(acc, got, strict=True):
        # a reward model that dropped trailing steps (max_length) leaves them at 0
        out.append([x + weight * (g[i] if i < len(g) else 0.0) for i, x in enumerate(a)])
    return out


def token_steps(tokenizer: Any, token_ids: Sequence[int], steps: Sequence[str]) -> list[int]:
    """The step index of every generated token (steps re-join to the decoded text).

    Token k belongs to the first step whose end (in characters) lies beyond the text decoded
    from tokens [0, k); tokens after the text (EOS, a stop string) belong to the last step.
    """
    if not steps:
        return [0] * len(token_ids)
    ends, total = [], 0
    for s in steps:
        total += len(s)
        ends.append(total)

    def decoded_len(k: int) -> int:
        return len(tokenizer.decode(token_ids[:k], skip_special_tokens=True))

    # first token index whose prefix reaches each step end (prefix lengths are monotone)
    cuts = []
    for end in ends[:-1]:
        lo, hi = 0, len(token_ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if decoded_len(mid) >= end:
                hi = mid
            else:
                lo = mid + 1
        cuts.append(lo)
    return [bisect.bisect_right(cuts, k) for k in range(len(token_ids))]


def token_advantages(cfg: RLConfig, scored: Scored, group: int,
                     token_step: Sequence[Sequence[int]]) -> list[list[float]]:  # fmt: skip
    """Per-token advantages: the group outcome advantage plus the process advantage."""
    rewards = torch.tensor(scored.outcome).view(-1, group)
    outcome_adv = outcome_advantages(rewards, cfg.estimator).flatten().tolist()
    use_process = (cfg.rewards.prm or cfg.rewards.implicit_prm) and any(scored.step_rewards)
    process: list[list[float]] = [[] for _ in outcome_adv]
    if use_process:
        for g in range(len(outcome_adv) // group):
            block = range(g * group, (g + 1) * group)
            returns = [
                step_returns(scored.step_rewards[i], cfg.credit, cfg.clip_eta) for i in block
            ]
            for i, adv in zip(block, process_advantages(returns), strict=True):
                process[i] = adv
    out = []
    for i, steps_of in enumerate(token_step):
        adv = process[i]
        out.append([outcome_adv[i] + (adv[min(k, len(adv) - 1)] if adv else 0.0)
                    for k in steps_of])  # fmt: skip
    return out
