"""Policy accuracy and best-of-N / weighted-vote curves over an eval split's rollouts.

Inputs are plain rows (rollouts artifact rows, plus optional reward scores keyed by
(problem_id, sample_idx)), so the functions run the same on any policy and any reward model.
A reward model's scores are probabilities unless `kinds` says otherwise (`metrics.ScoreKind`);
votes count answers that math-verify judges equal as one answer (`answer_classes`).

Every interval names its method (`ci_method` beside it in the metrics): pairwise accuracy's is
a problem-level percentile bootstrap of the pooled accuracy it reports; the RL-vs-base
difference and the selection curves use the normal approximation (± 1.96 standard errors).
"""

import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from rwpipe.eval.metrics import (
    Aggregation,
    ScoreKind,
    aggregate,
    mean_stderr,
    pass_at_k,
    per_problem_accuracy,
    pick_best,
    pick_majority,
    undefined,
)

Key = tuple[str, int]
Scores = Mapping[Key, tuple[float | None, Sequence[float]]]
BOOTSTRAP_RESAMPLES = 1000
PAIRWISE_CI = (
    f"percentile bootstrap over problems, {BOOTSTRAP_RESAMPLES} resamples (the pooled "
    "pairwise accuracy recomputed on each)"
)
CURVES_CI = "normal approximation: ± 1.96 standard errors over problems"
PAIRED_CI = (
    "normal approximation: mean ± 1.96 standard errors of the paired per-problem differences"
)
_INT = re.compile(r"[+-]?\d+")


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
    scores: Mapping[str, Scores] | None = None,
    aggregations: Sequence[Aggregation] = ("min", "last", "prod", "mean"),
    draws: int = 50,
    seed: int = 0,
    kinds: Mapping[str, ScoreKind] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy of each selection rule at each N, averaged over random size-N subsets.

    Rules: `pass@1` (a random sample), `majority` (vote on the extracted answers), and per
    reward model in `scores` (name -> key -> (outcome score, step scores)): `<name>` best-of-N
    by the outcome score for ORMs, `<name>_<agg>` best-of-N by aggregated step scores and
    `<name>_<agg>_weighted` PRM-weighted majority vote for PRMs. `kinds` gives each model's
    score kind (default: probability); an aggregation undefined for it is left out
    (`skipped_rules` says why). Votes group the answers math-verify judges equal
    (`answer_classes`); unscored solutions and ties follow `rwpipe.eval.metrics`.

    Returns:
        One record per (rule, N): {"rule", "n", "accuracy", "stderr", "per_problem"} (stderr
        over problems; per_problem in sorted problem-id order, the same subsets for every rule,
        so that two rules' differences are paired).
    """
    groups = list(_groups(rows).values())
    top = min(len(g) for g in groups)
    classes = answer_classes([[r["pred"] for r in g] for g in groups])
    rules: dict[str, tuple[list[list[tuple]], Any]] = {}

    def samples(score_of) -> list[list[tuple]]:
        return [
            [(classes[i].get(r["pred"]), r["verdict"] == "correct", score_of(r)) for r in g]
            for i, g in enumerate(groups)
        ]

    plain = samples(lambda r: 0.0)
    rules["pass@1"] = (plain, lambda s: s[0][1])
    rules["majority"] = (plain, partial(pick_majority, weighted=False))
    for name, by_key in (scores or {}).items():
        kind = (kinds or {}).get(name, "probability")
        if not any(steps for _, steps in by_key.values()):
            rules[name] = (samples(partial(_score, by_key)), pick_best)
            continue
        for agg in aggregations:
            if undefined(agg, kind):
                continue
            scored = samples(partial(_score, by_key, agg=agg, kind=kind))
            rules[f"{name}_{agg}"] = (scored, pick_best)
            rules[f"{name}_{agg}_weighted"] = (
                scored, partial(pick_majority, weighted=True, kind=kind)
            )  # fmt: skip
    out = []
    for rule, (data, select) in rules.items():
        for n in (n for n in ns if n <= top):
            per = per_problem_accuracy(data, n, select, draws=draws, seed=seed)
            mean, se = mean_stderr(per)
            out.append({"rule": rule, "n": n, "accuracy": mean, "stderr": se, "per_problem": per})
    return out


def _score(
    by_key: Scores, r: Mapping[str, Any], agg: Aggregation | None = None,
    kind: ScoreKind = "probability",
) -> float:  # fmt: skip
    """A row's score: its outcome score (`agg` None) or its aggregated step scores; NaN when
    it has none."""
    outcome, steps = by_key[(r["problem_id"], r["sample_idx"])]
    value = aggregate(steps, agg, kind) if agg else outcome
    return float("nan") if value is None else value


def skipped_rules(
    scores: Mapping[str, Scores],
    aggregations: Sequence[Aggregation],
    kinds: Mapping[str, ScoreKind] | None = None,
) -> dict[str, str]:
    """The PRM rules `<name>_<agg>` (its best-of-N, weighted vote and pairwise accuracy) that
    `selection_curves` and `pairwise_table` leave out, each with the reason: `agg` is
    undefined for the model's score kind."""
    out = {}
    for name, by_key in scores.items():
        kind = (kinds or {}).get(name, "probability")
        if any(steps for _, steps in by_key.values()):
            for agg in aggregations:
                reason = undefined(agg, kind)
                if reason is not None:
                    out[f"{name}_{agg}"] = f"{agg} of {kind} step scores: {reason}"
    return out


def answer_classes(
    answers: Sequence[Sequence[str | None]], *, timeout_s: float = 10.0, workers: int = 2
) -> list[dict[str, str]]:
    """Per problem, each answer's class: the first-seen answer that math-verify judges equal
    to it (itself if none), so that equivalent answers (`\\frac12`, `0.5`, `1/2`) vote together.

    Each distinct answer is compared with the representatives of the classes found so far, in
    first-seen order; the first equal one is its class. One round per distinct answer, with
    every problem's comparisons in one batch (`rwpipe.verify.answers_equal`: killable workers,
    a deadline each, parses cached; a failed or timed-out comparison counts as different).
    Two plain integers are compared here, without it. None (no answer) has no class.
    """
    from rwpipe.verify import VerifierPool, answers_equal, same_answer

    distinct = [list(dict.fromkeys(a for a in group if a is not None)) for group in answers]
    reps: list[list[str]] = [[] for _ in distinct]
    out: list[dict[str, str]] = [{} for _ in distinct]
    with VerifierPool(workers, timeout_s, task=same_answer) as pool:
        for i in range(max((len(d) for d in distinct), default=0)):
            plan, pairs = [], []
            for p, ds in enumerate(distinct):
                if i >= len(ds):
                    continue
                known: list[bool | None] = []  # per representative; None: ask math-verify
                for rep in reps[p]:
                    ints = _INT.fullmatch(rep) and _INT.fullmatch(ds[i])
                    known.append(int(rep) == int(ds[i]) if ints else None)
                    if known[-1]:
                        break
                pairs += [
                    (rep, ds[i])
                    for rep, k in zip(reps[p][: len(known)], known, strict=True)
                    if k is None
                ]
                plan.append((p, ds[i], known))
            got = iter(answers_equal(pairs, pool=pool))
            for p, a, known in plan:
                equal = [next(got) if k is None else k for k in known]
                same = next(
                    (rep for rep, e in zip(reps[p][: len(equal)], equal, strict=True) if e), None
                )
                if same is None:
                    reps[p].append(a)
                out[p][a] = a if same is None else same
    return out


def compare_policies(
    base_rows: Sequence[Mapping[str, Any]], rl_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """pass@1 of two policies on the problems both sampled, and the paired difference.

    Per problem, d = (fraction of the RL policy's samples correct) - (the base policy's); the
    difference is mean(d) with a 95% interval mean ± 1.96 * std(d) / sqrt(problems), the
    normal approximation (`ci_method` says so).
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
        "ci_method": PAIRED_CI,
    }


def pooled_ci(
    wins: Sequence[float], counts: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """95% percentile bootstrap interval of sum(wins) / sum(counts), resampling the groups
    (problems) with replacement: items within a group are not independent."""
    w, c = np.asarray(wins, dtype=float), np.asarray(counts, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(w), (resamples, len(w)))
    lo, hi = np.quantile(w[idx].sum(1) / c[idx].sum(1), [0.025, 0.975])
    return float(lo), float(hi)


def pairwise_accuracy(
    rows: Sequence[Mapping[str, Any]],
    score_of: Callable[[Mapping[str, Any]], float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """RewardBench-style pairwise accuracy on the (correct, incorrect) pairs of each problem's
    samples: the fraction of all pairs whose correct member scores higher (a tie counts 1/2).

    The 95% interval is a percentile bootstrap of that same pooled fraction: problems are
    resampled with replacement (pairs within a problem are not independent) and the total wins
    over the total pairs recomputed, `resamples` times. Like the statistic, it lies in [0, 1].
    """
    wins_per, pairs_per = [], []
    for group in _groups(rows).values():
        good = [score_of(r) for r in group if r["verdict"] == "correct"]
        bad = [score_of(r) for r in group if r["verdict"] != "correct"]
        if good and bad:
            wins_per.append(
                sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
            )
            pairs_per.append(len(good) * len(bad))
    if not pairs_per:
        return {"pairs": 0, "problems": 0, "accuracy": float("nan")}
    lo, hi = pooled_ci(wins_per, pairs_per, resamples, seed)
    return {"pairs": sum(pairs_per), "problems": len(pairs_per),
            "accuracy": sum(wins_per) / sum(pairs_per), "ci95_lo": lo, "ci95_hi": hi,
            "ci_method": PAIRWISE_CI}  # fmt: skip


def pairwise_table(
    rows: Sequence[Mapping[str, Any]],
    scores: Mapping[str, Scores],
    aggregations: Sequence[Aggregation],
    kinds: Mapping[str, ScoreKind] | None = None,
) -> dict[str, dict[str, Any]]:
    """`pairwise_accuracy` for each reward model: ORMs by their outcome score, PRMs by each
    step aggregation defined for their score kind (`kinds`; default probability). A solution
    with no score (no scored step, or a NaN step) ranks lowest."""
    out = {}
    for name, by_key in scores.items():
        kind = (kinds or {}).get(name, "probability")
        has_steps = any(steps for _, steps in by_key.values())
        for agg in aggregations if has_steps else (None,):
            if agg is not None and undefined(agg, kind):
                continue

            def score_of(r, by_key=by_key, agg=agg, kind=kind):
                value = _score(by_key, r, agg, kind)
                return float("-inf") if value != value else value

            out[f"{name}_{agg}" if agg else name] = pairwise_accuracy(rows, score_of)
    return out
