"""Policy accuracy and best-of-N / weighted-vote curves over an eval split's rollouts.

Inputs are plain rows (rollouts artifact rows, plus optional reward scores keyed by
(problem_id, sample_idx)), so the functions run the same on any policy and any reward model.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rwpipe.eval.metrics import (
    Aggregation,
    aggregate,
    best_of_n,
    pass_at_k,
    pick_best,
    pick_majority,
)

Key = tuple[str, int]


def _groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["problem_id"]].append(r)
    return dict(sorted(groups.items()))


def policy_accuracy(rows: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> dict[str, float]:
    """pass@k (unbiased, averaged over problems) for each k up to the samples per problem, and
    the mean completion length in tokens."""
    groups = _groups(rows)
    n = min(len(g) for g in groups.values())
    out: dict[str, float] = {"problems": len(groups), "samples_per_problem": n}
    for k in (k for k in ks if k <= n):
        values = [
            pass_at_k(len(g), sum(r["verdict"] == "correct" for r in g), k) for g in groups.values()
        ]
        out[f"pass@{k}"] = sum(values) / len(values)
    out["mean_tokens"] = sum(r["num_tokens"] for r in rows) / len(rows)
    return out


def selection_curves(
    rows: Sequence[Mapping[str, Any]],
    ns: Sequence[int],
    scores: Mapping[str, Mapping[Key, tuple[float | None, Sequence[float]]]] | None = None,
    aggregations: Sequence[Aggregation] = ("min", "last", "prod", "mean"),
    draws: int = 50,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Accuracy of each selection rule at each N, averaged over random size-N subsets.

    Rules: `pass@1` (a random sample), `majority` (vote on the extracted answers), and per
    reward model in `scores` (name -> key -> (outcome score, step scores)): `<name>` best-of-N
    by the outcome score for ORMs, `<name>_<agg>` best-of-N by aggregated step scores and
    `<name>_<agg>_weighted` PRM-weighted majority vote for PRMs.

    Returns:
        One record per (rule, N): {"rule", "n", "accuracy", "stderr"} (stderr over problems).
    """
    groups = list(_groups(rows).values())
    top = min(len(g) for g in groups)
    rules: dict[str, tuple[list[list[tuple]], Any]] = {}

    def samples(score_of) -> list[list[tuple]]:
        return [[(r["pred"], r["verdict"] == "correct", score_of(r)) for r in g] for g in groups]

    plain = samples(lambda r: 0.0)
    rules["pass@1"] = (plain, lambda s: s[0][1])
    rules["majority"] = (plain, lambda s: pick_majority(s, weighted=False))
    for name, by_key in (scores or {}).items():

        def get(r, agg=None, by_key=by_key):
            outcome, steps = by_key[(r["problem_id"], r["sample_idx"])]
            value = aggregate(steps, agg) if agg else outcome
            return float("-inf") if value is None or value != value else value

        has_steps = any(steps for _, steps in by_key.values())
        if not has_steps:
            rules[name] = (samples(get), pick_best)
            continue
        for agg in aggregations:
            scored = samples(lambda r, agg=agg: get(r, agg))
            rules[f"{name}_{agg}"] = (scored, pick_best)
            rules[f"{name}_{agg}_weighted"] = (
                [[(a, c, max(s, 0.0)) for a, c, s in g] for g in scored],
                lambda s: pick_majority(s, weighted=True),
            )
    out = []
    for rule, (data, select) in rules.items():
        for n in (n for n in ns if n <= top):
            mean, se = best_of_n(data, n, select, draws=draws, seed=seed)
            out.append({"rule": rule, "n": n, "accuracy": mean, "stderr": se})
    return out


def compare_policies(
    base_rows: Sequence[Mapping[str, Any]], rl_rows: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """pass@1 of two policies on the problems both sampled, and the paired difference.

    Per problem, d = (fraction of the RL policy's samples correct) - (the base policy's); the
    difference is mean(d) with a 95% interval mean ± 1.96 * std(d) / sqrt(problems).
    """
    base, rl = _groups(base_rows), _groups(rl_rows)
    common = sorted(set(base) & set(rl))
    if not common:
        raise ValueError("the two policies share no problem")

    def acc(group: Sequence[Mapping[str, Any]]) -> float:
        return sum(r["verdict"] == "correct" for r in group) / len(group)

    diffs = [acc(rl[p]) - acc(base[p]) for p in common]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else float("nan")
    half = 1.96 * math.sqrt(var / n) if n > 1 else float("nan")
    return {
        "problems": n,
        "pass@1_base": sum(acc(base[p]) for p in common) / n,
        "pass@1_rl": sum(acc(rl[p]) for p in common) / n,
        "mean_tokens_base": sum(r["num_tokens"] for p in common for r in base[p])
        / sum(len(base[p]) for p in common),
        "mean_tokens_rl": sum(r["num_tokens"] for p in common for r in rl[p])
        / sum(len(rl[p]) for p in common),
        "delta": mean,
        "delta_ci95_lo": mean - half,
        "delta_ci95_hi": mean + half,
    }


def pairwise_accuracy(
    rows: Sequence[Mapping[str, Any]], score_of: Callable[[Mapping[str, Any]], float]
) -> dict[str, float]:
    """RewardBench-style pairwise accuracy on the (correct, incorrect) pairs of each problem's
    samples: the fraction of pairs whose correct member scores higher (a tie counts 1/2).

    The interval is mean ± 1.96 standard errors of the per-problem accuracies (pairs within a
    problem are not independent).
    """
    per_problem, wins_all, pairs_all = [], 0.0, 0
    for group in _groups(rows).values():
        good = [score_of(r) for r in group if r["verdict"] == "correct"]
        bad = [score_of(r) for r in group if r["verdict"] != "correct"]
        wins = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
        pairs = len(good) * len(bad)
        if pairs:
            per_problem.append(wins / pairs)
            wins_all, pairs_all = wins_all + wins, pairs_all + pairs
    if not pairs_all:
        return {"pairs": 0, "problems": 0, "accuracy": float("nan")}
    n = len(per_problem)
    mean = sum(per_problem) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in per_problem) / (n - 1) / n) if n > 1 else math.nan
    acc = wins_all / pairs_all
    return {"pairs": pairs_all, "problems": n, "accuracy": acc,
            "ci95_lo": acc - 1.96 * se, "ci95_hi": acc + 1.96 * se}  # fmt: skip


def pairwise_table(
    rows: Sequence[Mapping[str, Any]],
    scores: Mapping[str, Mapping[Key, tuple[float | None, Sequence[float]]]],
    aggregations: Sequence[Aggregation],
) -> dict[str, dict[str, float]]:
    """`pairwise_accuracy` for each reward model: ORMs by their outcome score, PRMs by each
    step aggregation (a solution with no scored step ranks lowest)."""
    out = {}
    for name, by_key in scores.items():
        has_steps = any(steps for _, steps in by_key.values())
        for agg in aggregations if has_steps else (None,):

            def score_of(r, by_key=by_key, agg=agg):
                outcome, steps = by_key[(r["problem_id"], r["sample_idx"])]
                value = aggregate(steps, agg) if agg else outcome
                return float("-inf") if value is None or value != value else value

            out[f"{name}_{agg}" if agg else name] = pairwise_accuracy(rows, score_of)
    return out
