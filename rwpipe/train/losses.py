"""Reward-model losses. Pure tensor functions: each is tested against hand-computed values.

Conventions: `mask` is 1 where a position carries a label and 0 elsewhere; every loss is the
mean over labelled items (so a batch's loss does not depend on its padding).
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs (Stiennon et al. 2020;
    the margin as in Llama 2's reward model)."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def pointwise_bce_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(score) against outcome labels in [0, 1]."""
    return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))


def step_bce_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE at labelled positions only (step ends); targets are hard 0/1 or soft MC values.

    Args:
        logits: (batch, seq) one logit per position.
        targets: (batch, seq) in [0, 1]; ignored where mask is 0.
        mask: (batch, seq) 1 at labelled step ends.
    """
    mask = mask.to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return (per * mask).sum() / mask.sum().clamp(min=1)


def next_token_logsoftmax(logits: torch.Tensor) -> torch.Tensor:
    """The float32 log-softmax over the vocabulary of positions 0 .. seq - 2, each predicting
    the next token: (batch, seq - 1, vocab)."""
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens < t) for t = 1..seq-1, as (batch, seq - 1)."""
    return next_token_logsoftmax(logits).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def response_mask(
    spans: Sequence[tuple[int, int]], width: int, start: int = 0, device: Any = None
) -> torch.Tensor:
    """1 at column j where position start + j predicts a response token, one row per
    (prompt_len, seq_len) span: the mask of next-token log-probs from position `start` on,
    (len(spans), width). start = 0 and width = seq - 1 is the whole sequence's (the trainers');
    the RL update crops it to its response window."""
    mask = torch.zeros((len(spans), width), device=device)
    for b, (prompt_len, seq_len) in enumerate(spans):
        mask[b, max(prompt_len - 1 - start, 0) : seq_len - 1 - start] = 1
    return mask


def keep_from(ids: torch.Tensor, start: int) -> int | torch.Tensor:
    """transformers' `logits_to_keep` for positions start .. seq - 1 (0: every position), as
    indices: they gather a contiguous copy of the hidden states, where a slice would be a
    strided view that the lm_head's matmul broadcasts its weight over."""
    width = ids.shape[1]
    return torch.arange(start, width, device=ids.device) if 0 < start < width else 0


def window_token_logprobs(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, start: int
) -> torch.Tensor:
    """`token_logprobs` of a causal LM's next-token predictions from position `start` on
    (tokens start + 1 .. seq - 1), with the lm_head and the log-softmax over the vocabulary
    run on those positions only; (B, seq - 1), zero before them."""
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep_from(ids, start)).logits
    offset = ids.shape[1] - logits.shape[1]
    return F.pad(token_logprobs(logits, ids[:, offset:]), (offset, 0))


def implicit_rewards(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, response_mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token implicit process rewards beta * log(pi / pi_ref) on response tokens, 0 elsewhere
    (Yuan et al. 2024, "Free Process Rewards without Process Labels")."""
    return beta * (policy_logps - ref_logps) * response_mask.to(policy_logps.dtype)


def implicit_prm_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    response_mask: torch.Tensor,
    outcomes: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Cross-entropy on the outcome label of r = sum_t beta * log(pi/pi_ref): the implicit PRM's
    training objective; step rewards are sums of the per-token terms over each step."""
    reward = implicit_rewards(policy_logps, ref_logps, response_mask, beta).sum(-1)
    return pointwise_bce_loss(reward, outcomes)
