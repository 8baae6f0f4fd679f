"""Preference pairs for outcome reward models, from labelled rollouts (stage `pairs`).

A pair is a correct and an incorrect rollout of the same problem (verified outcome labels), up
to `per_problem` distinct pairs per problem, drawn with a seed of their own per problem by
`draw_pairs`, the one pair-drawing function (train-rm draws its in-memory pairs with it too).
With `margin: soft`, each pair carries a Bradley-Terry margin from the Monte-Carlo step values:
the mean soft label of the chosen rollout's labelled steps minus the rejected one's, floored at
0 (null where either rollout has no soft label); with `margin: none` every margin is null.
`margin_scale` multiplies it.
"""

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rwpipe.runtime import stable_seed

T = TypeVar("T")


def draw_pairs(
    items: Iterable[T],
    *,
    problem: Callable[[T], str],
    outcome: Callable[[T], int | None],
    per_problem: int,
    seed: int,
) -> list[tuple[T, T]]:
    """(correct, incorrect) pairs of the same problem, up to `per_problem` per problem.

    Problems are visited in sorted order; within one, the candidates are every (correct,
    incorrect) combination in the items' order, sampled without replacement with a seed
    derived from `seed` and the problem id, so a problem's pairs do not depend on the others.
    """
    by_problem: dict[str, list[T]] = defaultdict(list)
    for x in items:
        by_problem[problem(x)].append(x)
    out: list[tuple[T, T]] = []
    for pid in sorted(by_problem):
        good = [x for x in by_problem[pid] if outcome(x) == 1]
        bad = [x for x in by_problem[pid] if outcome(x) == 0]
        candidates = [(g, b) for g in good for b in bad]
        rng = random.Random(stable_seed(seed, "pairs", pid))
        out.extend(rng.sample(candidates, min(per_problem, len(candidates))))
    return out


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
    ordered = sorted(rows, key=lambda r: r["sample_idx"])  # stable: a problem's rows by sample
    drawn = draw_pairs(
        ordered,
        problem=lambda r: r["problem_id"],
        outcome=lambda r: r["outcome"],
        per_problem=per_problem,
        seed=seed,
    )
    out = []
    for g, b in drawn:
        m = None
        if margin == "soft":
            mg, mb = _mean_soft(g), _mean_soft(b)
            m = None if mg is None or mb is None else max(0.0, mg - mb) * margin_scale
        out.append({
            "problem_id": g["problem_id"], "split": g["split"], "question": g["question"],
            "prompt": g["prompt"], "chosen_idx": g["sample_idx"],
            "rejected_idx": b["sample_idx"], "chosen_steps": g["steps"],
            "rejected_steps": b["steps"], "margin": m,
        })  # fmt: skip
    return out


def run(cfg: Any, base: Any, *, labels: Path, out: Path) -> dict[str, int]:
    """Stage `pairs`: read LABELS, draw the pairs of `cfg.splits`, write OUT; the stats.

    Raises:
        InputError: no labelled rollout in the splits, or no problem with both outcomes.
    """
    import pyarrow as pa

    from rwpipe import artifacts
    from rwpipe.errors import InputError

    rows = [r for r in artifacts.read_artifact(labels, "labels").to_pylist()
            if r["split"] in cfg.splits]  # fmt: skip
    if not rows:
        raise InputError(f"{labels}: no labelled rollouts in split(s) {', '.join(cfg.splits)}")
    got = build_pairs(rows, per_problem=cfg.per_problem, seed=base.seed, margin=cfg.margin,
                      margin_scale=cfg.margin_scale)  # fmt: skip
    if not got:
        raise InputError(f"{labels}: no problem has both a correct and an incorrect rollout")
    stats = {"pairs": len(got), "problems": len({p["problem_id"] for p in got}),
             "with_margin": sum(p["margin"] is not None for p in got)}  # fmt: skip
    artifacts.write_artifact(pa.Table.from_pylist(got), out, "pairs", section="pairs",
                             config=cfg, stats=stats)  # fmt: skip
    return stats
