"""Classification metrics for reward models, with no dependency beyond numpy."""

from collections.abc import Sequence

import numpy as np


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half).

    Returns NaN when one class is missing.
    """
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # average ranks over ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap_ci(
    fn, *arrays: Sequence, draws: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of `fn(*arrays)` resampling items (rows) jointly."""
    rng = np.random.default_rng(seed)
    cols = [np.asarray(a) for a in arrays]
    n = len(cols[0])
    stats = []
    for _ in range(draws):
        idx = rng.integers(0, n, n)
        value = fn(*(c[idx] for c in cols))
        if not np.isnan(value):
            stats.append(value)
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> float:
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    return float(((s >= threshold) == (y == 1)).mean()) if len(s) else float("nan")
