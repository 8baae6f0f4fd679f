"""Advantage estimators, PRM credit assignment and the clipped policy-gradient loss.

Pure tensor functions; tests/test_rl.py checks each against hand-computed values.

Outcome advantages (one scalar per completion; `rewards` is (prompts, G), a group per row):

- `grpo`: (r - mean_group) / (std_group + eps) (Shao et al. 2024, DeepSeekMath). std is the
  population std (ddof 0); a group whose rewards are all equal gets 0.
- `drgrpo`: r - mean_group, no std division (Liu et al. 2025, "Understanding R1-Zero-Like
  Training"); pair it with `loss_agg: token_sum` (their constant normaliser).
- `rloo`: r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_group) (Ahmadian et al. 2024).
- `reinforce_pp`: r - mean_group, then normalised by the mean and std over the whole batch
  ("REINFORCE++ with baseline", Hu et al. 2025). The paper puts the KL penalty into the
  reward; here KL is a loss term for every estimator (departure, documented in README).

PRM credit assignment turns per-step rewards r_1..r_K of one completion into per-step returns
G_1..G_K; each token of step k then gets G_k:

- `sum`: G_k = sum_{j >= k} r_j, the usual return-to-go. Known to invite reward hacking: a
  policy can add many mildly positive steps.
- `min_form`: G_k = min_{j >= k} r_j ("Stop Summation: Min-Form Credit Assignment Is All
  Process Reward Model Needs for Reasoning", Cheng et al. 2025; their softmin with
  temperature -> 0). A completion is worth its worst remaining step.
- `clip`: r'_j = min(r_j - eta, 0), then return-to-go ("On Designing Effective RL Reward at
  Training Time for LLM Reasoning", Gao et al. 2024): step rewards can only penalise, so more
  steps never pay.
- `delta`: r'_j = r_j - r_{j+1} for j < K and r'_K = 0 (the last step's process reward is
  dropped; the sparse success reward is the last step's signal), then return-to-go, which
  telescopes to G_k = r_k - r_K (same paper, its Delta mechanism figure): the total return is
  bounded whatever the number of steps, and a completion cannot raise it by appending steps.

Process advantages use the group as baseline: A_{i,k} = G_{i,k} - mean_i' G_{i',1} (each
completion's step returns minus the group's mean return from the first step), the RLOO-style
baseline PRIME uses for its implicit process rewards.
"""

from collections.abc import Sequence

import torch

ESTIMATORS = ("grpo", "drgrpo", "rloo", "reinforce_pp")
CREDIT_RULES = ("sum", "min_form", "clip", "delta")
LOSS_AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "token_sum")


def outcome_advantages(rewards: torch.Tensor, estimator: str, eps: float = 1e-6) -> torch.Tensor:
    """Per-completion advantages from (prompts, G) rewards; see the module docstring."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, group), got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    group = rewards.shape[1]
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if estimator == "grpo":
        return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    if estimator == "drgrpo":
        return centred
    if estimator == "rloo":
        if group < 2:
            raise ValueError("rloo needs a group of at least 2")
        return centred * group / (group - 1)
    if estimator == "reinforce_pp":
        if centred.numel() < 2:
            return torch.zeros_like(centred)
        return (centred - centred.mean()) / (centred.std(unbiased=False) + eps)
    raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")


def step_returns(step_rewards: Sequence[float], rule: str, eta: float = 0.0) -> list[float]:
    """Per-step returns G_1..G_K of one completion (see the module docstring)."""
    r = [float(x) for x in step_rewards]
    if not r:
        return []
    if rule == "min_form":
        out, low = [], float("inf")
        for x in reversed(r):
            low = min(low, x)
            out.append(low)
        return out[::-1]
    if rule == "clip":
        r = [min(x - eta, 0.0) for x in r]
    elif rule == "delta":
        r = [x - y for x, y in zip(r, r[1:], strict=False)] + [0.0]
    elif rule != "sum":
        raise ValueError(f"unknown credit rule {rule!r}; expected one of {', '.join(CREDIT_RULES)}")
    out, total = [], 0.0
    for x in reversed(r):
        total += x
        out.append(total)
    return out[::-1]


def process_advantages(returns: Sequence[Sequence[float]]) -> list[list[float]]:
    """Group-baselined step advantages for one group: G_{i,k} - mean_i' G_{i',1}.

    A completion without steps (empty text) contributes a first-step return of 0.
    """
    if not returns:
        return []
    baseline = sum(g[0] if g else 0.0 for g in returns) / len(returns)
    return [[x - baseline for x in g] for g in returns]


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "seq_mean_token_mean",
    max_tokens: int = 1,
    ref_logps: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate (PPO/GRPO) with an optional k3 KL term, over response tokens.

    Args:
        logps, old_logps, ref_logps: (B, T) log-probs of the sampled tokens under the current,
            sampling-time and reference policies.
        advantages: (B, T) per-token advantages.
        mask: (B, T) 1 on response tokens.
        clip_low, clip_high: the ratio is clipped to [1 - clip_low, 1 + clip_high]
            (clip_high > clip_low is DAPO's clip-higher).
        agg: how token losses become one number: `seq_mean_token_mean` (GRPO: mean over each
            sequence's tokens, then over sequences), `token_mean` (DAPO: mean over all tokens
            of the batch), `token_sum` (Dr.GRPO: sum over tokens / (B * max_tokens)).
        max_tokens: the constant normaliser of `token_sum` (the generation budget).
        kl_coef: weight of KL(pi || pi_ref), estimated per token with k3 = exp(d) - d - 1,
            d = ref - logp (Schulman's unbiased, non-negative estimator).

    Returns:
        The loss and statistics (clip fraction, KL, ratio) as floats.
    """
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    kl = torch.zeros_like(logps)
    if ref_logps is not None:
        d = ref_logps - logps
        kl = torch.exp(d) - d - 1
        per_token = per_token + kl_coef * kl
    loss = aggregate(per_token, mask, agg, max_tokens)
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        # the clip is active where the clipped term is the smaller one (it binds)
        is_clipped = (clipped * advantages < ratio * advantages).to(mask.dtype)
        stats = {
            "clip_fraction": float((is_clipped * mask).sum() / tokens),
            "kl": float((kl * mask).sum() / tokens),
            "ratio": float((ratio * mask).sum() / tokens),
        }
    return loss, stats


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, agg: str, max_tokens: int = 1):
    """Reduce (B, T) token losses over the mask; see `policy_loss`."""
    if agg == "seq_mean_token_mean":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.mean()
    if agg == "token_mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if agg == "token_sum":
        return (per_token * mask).sum() / (per_token.shape[0] * max(max_tokens, 1))
    raise ValueError(f"unknown loss aggregation {agg!r}")


def entropy_of_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution given as log-probabilities over the last axis."""
    return -(logp.exp() * logp).sum(-1)
