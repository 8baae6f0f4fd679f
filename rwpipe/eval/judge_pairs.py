"""A pairwise LLM judge on the eval rollouts, RewardBench style: for (correct, incorrect)
sample pairs of one problem, does the judge prefer the correct one?

Each pair is judged in both orders (`rwpipe.judge.judge_pairs`): a consistent choice of the
correct solution scores 1, of the incorrect one 0, a position-following disagreement ("tie")
1/2, and a pair on which both orders abstain 0 (as ProcessBench counts abstentions). The 95%
interval is a percentile bootstrap over problems of that same pooled accuracy. Also reported:
how often the judge picked position A among its parsed choices (0.5 = no position bias), the
ties and the abstentions.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from rwpipe.eval.curves import pooled_ci
from rwpipe.judge import PairJudgement

PAIRS_PER_PROBLEM = 4
BOOTSTRAP_CI = "percentile bootstrap over problems, 1000 resamples (pooled accuracy)"
SCORE = {"x": 1.0, "tie": 0.5, "y": 0.0, None: 0.0}


def correct_incorrect_pairs(
    rows: Sequence[Mapping[str, Any]], per_problem: int = PAIRS_PER_PROBLEM
) -> list[tuple[str, str, str, str]]:
    """(problem_id, question, correct completion, incorrect completion), at most `per_problem`
    per problem, pairing the samples in index order (deterministic)."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["problem_id"], r["sample_idx"])):
        groups[r["problem_id"]].append(r)
    out = []
    for pid, group in groups.items():
        good = [r for r in group if r["verdict"] == "correct"]
        bad = [r for r in group if r["verdict"] != "correct"]
        pairs = [(g, b) for g in good for b in bad][:per_problem]
        out += [(pid, g["question"], g["completion"], b["completion"]) for g, b in pairs]
    return out


def pairwise_judge_accuracy(
    problem_ids: Sequence[str], judged: Sequence[PairJudgement], seed: int = 0
) -> dict[str, Any]:
    """Accuracy (x = the correct solution) with its interval, position bias, ties, abstentions."""
    if not judged:
        return {"pairs": 0, "problems": 0, "accuracy": float("nan")}
    per: dict[str, list[float]] = defaultdict(list)
    for pid, j in zip(problem_ids, judged, strict=True):
        per[pid].append(SCORE[j.preferred])
    wins = [sum(v) for v in per.values()]
    counts = [len(v) for v in per.values()]
    lo, hi = pooled_ci(wins, counts, seed=seed)
    choices = [v for j in judged for v in (j.forward.value, j.swapped.value) if v is not None]
    return {
        "pairs": len(judged), "problems": len(per), "accuracy": sum(wins) / sum(counts),
        "ci95_lo": lo, "ci95_hi": hi, "ci_method": BOOTSTRAP_CI,
        "ties": sum(j.preferred == "tie" for j in judged),
        "abstained": sum(j.preferred is None for j in judged),
        "position_a_rate": choices.count("A") / len(choices) if choices else float("nan"),
    }  # fmt: skip
