"""Evaluation metrics as pure functions, each tested against hand-computed examples.

Definitions follow the papers researchers cite: pass@k is the unbiased estimator of Chen et al.
(2021); ProcessBench (Zheng et al. 2024) scores a critic by its first predicted wrong step,
F1 = harmonic mean of the accuracy on erroneous and on correct solutions; best-of-N and
weighted voting follow search-and-learn (aggregate a PRM's step scores, pick or vote).
"""

import math
import random
from collections.abc import Callable, Sequence
from typing import Literal

Aggregation = Literal["min", "last", "prod", "mean"]


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
    """The answer with the largest total weight (a vote each by default); None abstains.

    Ties go to the answer that appears first, so the result never depends on hash order.
    """
    totals: dict[str, float] = {}
    for i, a in enumerate(answers):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + (1.0 if weights is None else weights[i])
    if not totals:
        return None
    best = max(totals.values())
    return next(a for a in totals if totals[a] == best)  # dicts keep first-seen order


def aggregate(step_scores: Sequence[float], how: Aggregation) -> float:
    """One solution score from a PRM's step scores (NaN for no steps)."""
    if not step_scores:
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
    raise ValueError(f"unknown aggregation {how!r}")


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
    select: Callable[[Sequence[tuple[str | None, bool, float]]], bool],
    draws: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard error of `select`'s accuracy over random size-n subsets per problem.

    Args:
        groups: per problem, its samples as (answer, correct, score).
        n: subset size (at most the smallest group).
        select: given a subset, whether the method's pick is correct.
        draws: subsets per problem.

    Returns:
        (accuracy averaged over problems and draws, its standard error over problems).
    """
    rng = random.Random(seed)
    per_problem = []
    for samples in groups:
        hits = [select(rng.sample(list(samples), n)) for _ in range(draws)]
        per_problem.append(sum(hits) / draws)
    mean = sum(per_problem) / len(per_problem)
    if len(per_problem) < 2:
        return mean, float("nan")
    var = sum((x - mean) ** 2 for x in per_problem) / (len(per_problem) - 1)
    return mean, math.sqrt(var / len(per_problem))


def pick_best(subset: Sequence[tuple[str | None, bool, float]]) -> bool:
    """Best-of-N: the highest-scoring sample (first on ties) is correct."""
    return max(subset, key=lambda s: s[2])[1]


def pick_majority(subset: Sequence[tuple[str | None, bool, float]], weighted: bool) -> bool:
    """(Weighted) majority vote over answers; correct if any sample with that answer is."""
    winner = majority_vote([s[0] for s in subset], [s[2] for s in subset] if weighted else None)
    return winner is not None and any(s[0] == winner and s[1] for s in subset)
