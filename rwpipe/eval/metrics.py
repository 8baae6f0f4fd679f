"""Evaluation metrics as pure functions, each tested against hand-computed examples.

Definitions follow the papers researchers cite: pass@k is the unbiased estimator of Chen et al.
(2021); ProcessBench (Zheng et al. 2024) scores a critic by its first predicted wrong step,
F1 = harmonic mean of the accuracy on erroneous and on correct solutions; best-of-N and
weighted voting follow search-and-learn (aggregate a PRM's step scores, pick or vote).

Score kinds. A reward model's step scores are either probabilities in [0, 1] (ORMs, PRMs,
external PRMs: P(step correct)) or log-ratio rewards (an implicit PRM: beta * log(pi/pi_ref)
summed over a step's tokens; signed, unbounded; higher is better). What is defined differs:

| | probability | log_ratio |
| --- | --- | --- |
| aggregations | min, last, prod, mean | min, last, mean, sum |
| weighted-vote weight | the score itself | softmax of the scores over the subset |

`prod` of signed rewards has no meaning (the sum is the log of the product of the ratios) and
`sum` of probabilities is no probability: `undefined` gives the reason, `aggregate` refuses
them, and the eval skips those rules and records why. The softmax weight exp(s - max s) is
positive for every finite reward, so a negative reward still votes (clamping at 0 made a vote
over negative rewards a random pick), the winner does not change when every reward shifts by
a constant, and it is the Boltzmann weight exp(r) of the reward. It is not sigmoid(r): that is
the model's P(correct) only for the summed reward of a CE-trained implicit PRM, not for
min/last/mean. (The implicit-PRM paper reports majority voting on top of the PRM helping; the
research notes name no vote weight from it or from PRIME, so this choice is ours.)

NaN. A solution with a NaN step score is unscored: every aggregation of it is NaN. An unscored
solution never wins best-of-N (unless all are) and casts no weighted vote (weight 0). Samples
tied at the top share the credit: a pick's value is the fraction of the tied best samples (or
tied top answers) that are correct, the exact expectation of a uniformly random tie-break, so
no result depends on the order of the samples.
"""

import math
import random
from collections.abc import Callable, Sequence
from typing import Literal

Aggregation = Literal["min", "last", "prod", "mean", "sum"]
ScoreKind = Literal["probability", "log_ratio"]

_UNDEFINED: dict[tuple[str, str], str] = {
    ("log_ratio", "prod"): "a product of signed log-ratio rewards has no meaning (their sum "
    "is the log of the product of the ratios: use sum)",
    ("probability", "sum"): "a sum of step probabilities is no probability and grows with "
    "the number of steps (use prod or mean)",
}


def score_kind(model_kind: str) -> ScoreKind:
    """The scale of a reward model's step scores from its kind (`rwpipe.score.Scorer.kind`):
    an implicit PRM's are log-ratio rewards, every other model's probabilities."""
    return "log_ratio" if model_kind == "implicit_prm" else "probability"


def undefined(how: str, kind: ScoreKind) -> str | None:
    """Why aggregation `how` is undefined for `kind` scores, or None when it is defined."""
    return _UNDEFINED.get((kind, how))


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct), c correct.

    1 - C(n-c, k) / C(n, k), computed as a stable product.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def majority_vote(
    answers: Sequence[str | None], weights: Sequence[float] | None = None
) -> str | None:
    """The answer with the largest total weight (a vote each by default); None abstains, and
    so does a NaN weight.

    Ties go to the answer that appears first, so the result never depends on hash order.
    """
    totals = _totals(answers, weights)
    if not totals:
        return None
    best = max(totals.values())
    return next(a for a in totals if totals[a] == best)  # dicts keep first-seen order


def _totals(answers: Sequence[str | None], weights: Sequence[float] | None) -> dict[str, float]:
    """Each answer's total weight, first-seen order; fsum makes it exact and order-free."""
    parts: dict[str, list[float]] = {}
    for i, a in enumerate(answers):
        w = 1.0 if weights is None else weights[i]
        if a is not None and w == w:
            parts.setdefault(a, []).append(w)
    return {a: math.fsum(ws) for a, ws in parts.items()}


def aggregate(
    step_scores: Sequence[float], how: Aggregation, kind: ScoreKind = "probability"
) -> float:
    """One solution score from a PRM's step scores: NaN for no steps or any NaN step.

    Raises:
        ValueError: an aggregation undefined for `kind` scores (`undefined`), or unknown.
    """
    reason = undefined(how, kind)
    if reason is not None:
        raise ValueError(f"{how} of {kind} step scores: {reason}")
    if not step_scores or any(s != s for s in step_scores):
        return float("nan")
    match how:
        case "min":
            return min(step_scores)
        case "last":
            return step_scores[-1]
        case "prod":
            return math.prod(step_scores)
        case "mean":
            return sum(step_scores) / len(step_scores)
        case "sum":
            return math.fsum(step_scores)
    raise ValueError(f"unknown aggregation {how!r}")


def vote_weights(scores: Sequence[float], kind: ScoreKind) -> list[float]:
    """Positive weights for a weighted vote from one subset's solution scores (see the module
    docstring): probabilities as they are, log-ratio rewards through a softmax over the
    subset; a NaN score weighs 0.

    Raises:
        ValueError: a probability outside [0, 1] (the scores are not of `kind`).
    """
    if kind == "probability":
        bad = next((s for s in scores if s == s and not 0.0 <= s <= 1.0), None)
        if bad is not None:
            raise ValueError(f"probability score {bad} outside [0, 1]")
        return [s if s == s else 0.0 for s in scores]
    finite = [s for s in scores if s == s]
    if not finite:
        return [0.0] * len(scores)
    top = max(finite)
    exp = [math.exp(s - top) if s == s else 0.0 for s in scores]
    total = math.fsum(exp)
    return [e / total for e in exp]


def first_error(step_scores: Sequence[float], threshold: float) -> int:
    """The first step whose score is below `threshold` (-1: none): a scalar PRM as a critic."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), -1)


def processbench(predicted: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """ProcessBench: accuracy on erroneous solutions (label >= 0: the exact index must match),
    on correct ones (label -1: must predict -1), and F1 = their harmonic mean.

    A subset with no erroneous (or no correct) solution gets NaN for that accuracy and F1.
    """
    err = [p == y for p, y in zip(predicted, labels, strict=True) if y >= 0]
    ok = [p == -1 for p, y in zip(predicted, labels, strict=True) if y < 0]
    a = sum(err) / len(err) if err else float("nan")
    b = sum(ok) / len(ok) if ok else float("nan")
    f1 = 2 * a * b / (a + b) if err and ok and a + b > 0 else (0.0 if err and ok else float("nan"))
    return {"acc_erroneous": a, "acc_correct": b, "f1": f1}


def best_of_n(
    groups: Sequence[Sequence[tuple[str | None, bool, float]]],
    n: int,
    select: Callable[[Sequence[tuple[str | None, bool, float]]], float],
    draws: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard error over problems of `per_problem_accuracy`."""
    return mean_stderr(per_problem_accuracy(groups, n, select, draws, seed))


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt n; NaN for fewer than two values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1) / n)


def per_problem_accuracy(
    groups: Sequence[Sequence[tuple[str | None, bool, float]]],
    n: int,
    select: Callable[[Sequence[tuple[str | None, bool, float]]], float],
    draws: int = 50,
    seed: int = 0,
) -> list[float]:
    """Per problem, `select`'s accuracy averaged over `draws` random size-n subsets.

    Args:
        groups: per problem, its samples as (answer, correct, score).
        n: subset size (at most the smallest group).
        select: given a subset, whether the method's pick is correct (or its expected
            correctness, in [0, 1], when the method ties).
        draws: subsets per problem.
        seed: the subsets depend on it and on the group sizes only, so every rule run with
            one seed sees the same subsets (their per-problem differences are paired).
    """
    rng = random.Random(seed)
    per_problem = []
    for samples in groups:
        hits = [select(rng.sample(list(samples), n)) for _ in range(draws)]
        per_problem.append(sum(hits) / draws)
    return per_problem


def pick_best(subset: Sequence[tuple[str | None, bool, float]]) -> float:
    """Best-of-N: whether the highest-scoring sample is correct. A NaN score never wins unless
    every score is NaN; samples tied at the top share the credit (the fraction of them that is
    correct), so the result does not depend on the subset's order."""
    scored = [s for s in subset if s[2] == s[2]]
    if scored:
        top = max(s[2] for s in scored)
        scored = [s for s in scored if s[2] == top]
    tied = scored or list(subset)
    return sum(s[1] for s in tied) / len(tied)


def pick_majority(
    subset: Sequence[tuple[str | None, bool, float]],
    weighted: bool,
    kind: ScoreKind = "probability",
) -> float:
    """(Weighted) majority vote over answers; the top answer is correct if any sample with it
    is. Weights come from the scores through `vote_weights(kind)`. Answers tied at the top
    share the credit (the fraction of them that is correct); no answer at all scores 0.

    An answer is the sample's answer string: give equivalent answers one string (the eval
    groups them with math-verify, `rwpipe.eval.curves.answer_classes`) to vote together.
    """
    weights = vote_weights([s[2] for s in subset], kind) if weighted else None
    totals = _totals([s[0] for s in subset], weights)
    if not totals:
        return 0.0
    best = max(totals.values())
    top = [a for a, t in totals.items() if t == best]
    return sum(any(s[0] == a and s[1] for s in subset) for a in top) / len(top)
