"""Preference pairs for outcome reward models, from labelled rollouts.

A pair is a correct and an incorrect rollout of the same problem (verified outcome labels), up
to `per_problem` distinct pairs per problem, drawn with a seed of their own per problem (the
same draw `rwpipe.train.data.preference_pairs` makes). With `margin: soft`, each pair carries a
Bradley-Terry margin from the Monte-Carlo step values: the mean soft label of the chosen
rollout's labelled steps minus the rejected one's, floored at 0 (null where either rollout has
no soft label); with `margin: none` every margin is null. `margin_scale` multiplies it.
"""

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rwpipe.runtime import stable_seed


def _mean_soft(row: dict[str, Any]) -> float | None:
    values = [v for v in row["step_soft"] if v is not None]
    return sum(values) / len(values) if values else None


def build_pairs(
    rows: Sequence[dict[str, Any]],
    *,
    per_problem: int,
    seed: int,
    margin: str = "none",
    margin_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Pair rows (labels artifact rows) into (chosen, rejected) records; see the module doc."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_problem[r["problem_id"]].append(r)
    out = []
    for pid in sorted(by_problem):
        group = sorted(by_problem[pid], key=lambda r: r["sample_idx"])
        good = [r for r in group if r["outcome"] == 1]
        bad = [r for r in group if r["outcome"] == 0]
        candidates = [(g, b) for g in good for b in bad]
        rng = random.Random(stable_seed(seed, "pairs", pid))
        for g, b in rng.sample(candidates, min(per_problem, len(candidates))):
            m = None
            if margin == "soft":
                mg, mb = _mean_soft(g), _mean_soft(b)
                m = None if mg is None or mb is None else max(0.0, mg - mb) * margin_scale
            out.append({
                "problem_id": pid, "split": g["split"], "question": g["question"],
                "prompt": g["prompt"], "chosen_idx": g["sample_idx"],
                "rejected_idx": b["sample_idx"], "chosen_steps": g["steps"],
                "rejected_steps": b["steps"], "margin": m,
            })  # fmt: skip
    return out
