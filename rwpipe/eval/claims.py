"""What a run shows: the claims the seed papers make that one eval can test, each with its
estimate, 95% interval, n and verdict. report.md opens with them; metrics.json holds them
under `claims`.

Claims (each only where the run has what it needs):

- `rl_raises_pass1`: the RL policy's pass@1 minus the base policy's (rollouts of both).
- `majority_beats_pass1`: majority vote at the largest N minus pass@1 (self-consistency);
  `majority_beats_pass1_n<N>` the same at each smaller N >= 2, so the claim reads as a curve.
- `<rule>_beats_pass1`, `<rule>_beats_majority`: a reward model's best-of-N at the largest N
  minus a random sample (pass@1), and minus majority vote. `<rule>` is the ORM, and the PRM
  under its headline aggregation, the first of `eval.aggregations` defined for its scores.
- `prm_beats_outcome_rule`: the PRM's ProcessBench F1 (human step labels) minus that of the
  outcome rule, which flags step 0 exactly when the final answer is wrong: does the PRM find
  *where* a solution goes wrong better than knowing *whether* it does.
- `judge_beats_chance`: a pairwise LLM judge's accuracy on (correct, incorrect) pairs, both
  orders asked, minus 0.5 (`rwpipe.eval.judge_pairs`).

Selection differences are paired per problem on the same random subsets (every rule draws
them from one seed): mean ± 1.96 standard errors of the per-problem differences. Verdict:
`shown` when the interval lies above 0, `contradicted` when below, else `not shown at this
size` (a null at this many problems, not evidence of no effect).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from rwpipe.eval.metrics import mean_stderr

SHOWN, NULL, CONTRADICTED = "shown", "not shown at this size", "contradicted"
PAIRED_SELECTION_CI = (
    "normal approximation: mean ± 1.96 standard errors of the per-problem differences "
    "(both rules on the same random size-N subsets)"
)


def verdict(lo: float, hi: float) -> str:
    """`shown` if the interval excludes 0 from above, `contradicted` from below, else null."""
    if lo > 0:
        return SHOWN
    if hi < 0:
        return CONTRADICTED
    return NULL


def _claim(text: str, estimate: float, lo: float, hi: float, n: int, unit: str,
           method: str) -> dict[str, Any]:  # fmt: skip
    return {"claim": text, "estimate": estimate, "ci95_lo": lo, "ci95_hi": hi, "n": n,
            "unit": unit, "ci_method": method, "verdict": verdict(lo, hi)}  # fmt: skip


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a - b) and its normal 95% interval over paired items."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired differences need equal non-empty lists ({len(a)}, {len(b)})")
    mean, se = mean_stderr([x - y for x, y in zip(a, b, strict=True)])
    return mean, mean - 1.96 * se, mean + 1.96 * se


def headline_rules(
    curves: Sequence[Mapping[str, Any]], models: Sequence[str], aggregations: Sequence[str]
) -> dict[str, str]:
    """Model name -> its headline best-of-N rule present in `curves`: the ORM's own rule, a
    PRM's first aggregation in `aggregations` that was computed."""
    present = {c["rule"] for c in curves}
    out = {}
    for name in models:
        if name in present:
            out[name] = name
            continue
        rule = next((f"{name}_{a}" for a in aggregations if f"{name}_{a}" in present), None)
        if rule is not None:
            out[name] = rule
    return out


def claims(
    metrics: Mapping[str, Any],
    curves: Sequence[Mapping[str, Any]],
    models: Sequence[str] = (),
    aggregations: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The claims this run can test (module docstring), in report order."""
    out: dict[str, dict[str, Any]] = {}
    if "rl_vs_base" in metrics:
        c = metrics["rl_vs_base"]
        out["rl_raises_pass1"] = _claim(
            "RL raises pass@1 over the base policy", c["delta"], c["delta_ci95_lo"],
            c["delta_ci95_hi"], c["problems"], "problems", c["ci_method"],
        )  # fmt: skip
    by_n: dict[int, dict[str, Sequence[float]]] = {}
    for c in curves:
        if "per_problem" in c:
            by_n.setdefault(c["n"], {})[c["rule"]] = c["per_problem"]
    top = max((c["n"] for c in curves), default=0)
    at_top = by_n.get(top, {})
    if top < 2 or "pass@1" not in at_top:
        return out | _processbench_claim(metrics)
    base = {"pass1": ("a random sample (pass@1)", at_top["pass@1"])}
    for n in sorted(k for k in by_n if k >= 2):  # self-consistency at each N, the largest last
        at = by_n[n]
        if {"majority", "pass@1"} <= set(at):
            est, lo, hi = paired(at["majority"], at["pass@1"])
            key = "majority_beats_pass1" if n == top else f"majority_beats_pass1_n{n}"
            out[key] = _claim(
                f"majority vote at N={n} beats pass@1 (self-consistency)", est, lo, hi,
                len(at["pass@1"]), "problems", PAIRED_SELECTION_CI,
            )  # fmt: skip
    if "majority" in at_top:
        base["majority"] = (f"majority vote at N={top}", at_top["majority"])
    for name, rule in headline_rules(curves, models, aggregations).items():
        label = name.upper() if rule == name else f"{name.upper()} ({rule.split('_', 1)[1]})"
        for key, (what, values) in base.items():
            est, lo, hi = paired(at_top[rule], values)
            out[f"{rule}_beats_{key}"] = _claim(
                f"{label} best-of-{top} beats {what}", est, lo, hi, len(values), "problems",
                PAIRED_SELECTION_CI,
            )  # fmt: skip
    return out | _processbench_claim(metrics)


def _processbench_claim(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = _judge_claim(metrics)
    if "processbench_vs_outcome_rule" not in metrics:
        return out
    c = metrics["processbench_vs_outcome_rule"]
    subsets = ", ".join(k for k in metrics.get("processbench", {}) if k != "average")
    return out | {"prm_beats_outcome_rule": _claim(
        f"PRM finds the first wrong step better than the outcome rule (ProcessBench F1, "
        f"human labels; {subsets})", c["estimate"], c["ci95_lo"], c["ci95_hi"], c["n"],
        "solutions", c["ci_method"],
    )}  # fmt: skip


def _judge_claim(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    c = metrics.get("pairwise_judge", {})
    if not c.get("pairs"):
        return {}
    return {"judge_beats_chance": _claim(
        "the pairwise judge prefers the correct solution (both orders) above chance",
        c["accuracy"] - 0.5, c["ci95_lo"] - 0.5, c["ci95_hi"] - 0.5, c["pairs"], "pairs",
        c["ci_method"],
    )}  # fmt: skip


def table(found: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The claims as the markdown table that opens report.md, with the interval methods."""
    if not found:
        return []
    lines = ["## What this run shows", "", "| claim | estimate [95% CI] | n | verdict |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for c in found.values():
        lines.append(f"| {c['claim']} | {c['estimate']:+.3f} [{c['ci95_lo']:+.3f}, "
                     f"{c['ci95_hi']:+.3f}] | {c['n']} {c['unit']} | {c['verdict']} |")  # fmt: skip
    methods = list(dict.fromkeys(c["ci_method"] for c in found.values()))
    lines += ["", "Estimates are differences (first minus second); 95% CI: "
              + "; ".join(methods) + ". Verdict: shown when the interval lies above 0, "
              "contradicted when below, else not shown at this size."]  # fmt: skip
    return lines
