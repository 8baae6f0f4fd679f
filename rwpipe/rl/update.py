"""The updates of one RL step: `ppo_epochs` clipped-surrogate passes over the policy
(`train_step`) and PRIME's update of the implicit PRM on outcome labels
(`update_implicit_prm`)."""

from collections.abc import Sequence
from typing import Any

import torch

from rwpipe.backends import Completion
from rwpipe.config import RLConfig
from rwpipe.rl.advantages import entropy_of_logprobs, policy_loss
from rwpipe.rl.parallel import DataParallel
from rwpipe.rl.policy import Policy
from rwpipe.train.backbone import batch_tensors
from rwpipe.train.losses import next_token_logsoftmax, response_mask, token_logprobs

STATS = ("loss", "clip_fraction", "kl", "entropy", "grad_norm")
# One sequence to train on: prompt + completion ids, the prompt length, per-token advantages.
Item = tuple[list[int], int, Sequence[float]]


def _tensors(policy: Policy, batch: Sequence[Item], multiple: int) -> tuple[Any, ...]:
    """ids and attention mask (B, seq); `start`, the first position whose next token is a
    response token in some row; the response mask and advantages (B, seq - 1 - start), column
    j holding token start + 1 + j. Only positions from `start` on reach the lm_head."""
    pad = policy.tokenizer.pad_token_id
    pad = pad if pad is not None else policy.tokenizer.eos_token_id
    seqs = [s for s, _, _ in batch]
    ids, mask = batch_tensors(policy.model, seqs, pad, policy.device, multiple)
    start = min(plen for _, plen, _ in batch) - 1
    spans = [(plen, len(seq)) for seq, plen, _ in batch]
    resp = response_mask(spans, ids.shape[1] - 1 - start, start, device=policy.device)
    adv = torch.zeros_like(resp)
    for b, (seq, plen, a) in enumerate(batch):
        adv[b, plen - 1 - start : len(seq) - 1 - start] = torch.tensor(a, device=policy.device)
    return ids, mask, start, resp, adv


@torch.no_grad()
def _fixed_logps(policy: Policy, cfg: RLConfig, micro: Sequence[Sequence[Item]]):
    """Per micro-batch: the sampling policy's log-probs (only when ppo_epochs > 1; with one
    pass they equal the live ones, detached) and the reference's (only when kl_coef > 0)."""
    old, ref = [], []
    for batch in micro:
        ids, mask, start, _, _ = _tensors(policy, batch, cfg.optim.pad_to_multiple_of)
        # logits of positions start .. seq - 1: log-probs of tokens start + 1 .. seq - 1
        if cfg.ppo_epochs > 1:
            old.append(token_logprobs(policy.logits(ids, mask, start), ids[:, start:]))
        if cfg.kl_coef > 0:
            ref.append(token_logprobs(policy.reference_logits(ids, mask, start), ids[:, start:]))
    return old, ref


def _micro_step(policy: Policy, cfg: RLConfig, batch: Sequence[Item], old: Any, ref: Any,
                totals: tuple[int, int]) -> dict[str, float]:  # fmt: skip
    """Forward and backward of one micro-batch, its loss weighted by its share of the batch
    (`totals`: sequences, tokens) so that the micro-batches add up to the batch loss exactly;
    returns its weighted statistics."""
    ids, mask, start, resp, adv = _tensors(policy, batch, cfg.optim.pad_to_multiple_of)
    logp = next_token_logsoftmax(policy.logits(ids, mask, start))  # kept for the entropy
    logps = logp.gather(-1, ids[:, start + 1 :, None]).squeeze(-1)
    loss, stats = policy_loss(
        logps, old if old is not None else logps.detach(), adv, resp, clip_low=cfg.clip_low,
        clip_high=cfg.clip_high, agg=cfg.loss_agg, max_tokens=cfg.sampling.max_new_tokens,
        ref_logps=ref, kl_coef=cfg.kl_coef,
    )  # fmt: skip
    seqs, tokens = totals
    share = resp.sum().item() / tokens if cfg.loss_agg == "token_mean" else len(batch) / seqs
    (loss * share).backward()
    with torch.no_grad():
        stats["entropy"] = float(entropy_of_logprobs(logp.detach()[resp.bool()]).mean()
                                 if resp.any() else 0.0)  # fmt: skip
    out = {"loss": float(loss.detach()) * share}
    return out | {k: stats[k] * share for k in ("clip_fraction", "kl", "entropy")}


def train_step(
    policy: Policy,
    optimizer: Any,
    scheduler: Any,
    cfg: RLConfig,
    prompt_ids: Sequence[Sequence[int]],
    completions: Sequence[Completion],
    advantages: Sequence[Sequence[float]],
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """`cfg.ppo_epochs` clipped-surrogate updates on one batch; returns averaged statistics.
    Under data parallelism (`dp`), gradients are averaged across processes before each step."""
    dp = dp or DataParallel()
    items = [
        (list(p) + list(c.token_ids), len(p), a)
        for p, c, a in zip(prompt_ids, completions, advantages, strict=True)
        if c.token_ids
    ]
    if not items and dp.world == 1:
        return dict.fromkeys(STATS, 0.0)
    # by length, so that a micro-batch pads little (the batch loss is a weighted sum of
    # per-sequence terms: the grouping does not change it)
    items.sort(key=lambda item: len(item[0]))
    mb = cfg.optim.batch_size
    micro = [items[i : i + mb] for i in range(0, len(items), mb)]
    totals = (len(items), max(1, sum(len(a) for _, _, a in items)))
    old, ref = _fixed_logps(policy, cfg, micro)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    sums = dict.fromkeys(STATS, 0.0)
    policy.model.train()
    for _ in range(cfg.ppo_epochs):
        for j, batch in enumerate(micro):
            got = _micro_step(policy, cfg, batch, old[j] if old else None,
                              ref[j] if ref else None, totals)  # fmt: skip
            for k, v in got.items():
                sums[k] += v
        dp.average_grads(params)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        sums["grad_norm"] += float(norm)
    policy.model.eval()
    return {k: v / cfg.ppo_epochs for k, v in sums.items()}


def update_implicit_prm(implicit: Any, optimizer: Any, examples: Sequence[Any],
                        batch_size: int, max_grad_norm: float,
                        dp: DataParallel | None = None) -> float:  # fmt: skip
    """One PRIME update: cross-entropy of the implicit reward on the batch's outcome labels."""
    implicit.model.train()
    params = [p for p in implicit.model.parameters() if p.requires_grad]
    total = 0.0
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        loss = implicit.loss(batch, "implicit") * len(batch) / len(examples)
        loss.backward()
        total += float(loss.detach())
    (dp or DataParallel()).average_grads(params)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    implicit.model.eval()
    return total
