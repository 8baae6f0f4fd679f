"""PRMBench (Song et al. 2025, "PRMBench: A Fine-grained and Challenging Benchmark for
Process-Level Reward Models"): solutions into which an error of a known class was written, with
the erroneous steps marked; a PRM must tell each step correct or not.

A step the PRM scores below the threshold is called erroneous. Per error class, over all steps
of its solutions: F1 of the correct steps (positive class), F1 of the erroneous steps
(`f1_neg`), and PRMScore = 0.5 * F1 + 0.5 * F1_neg, the paper's headline with its equal
weights. Overall: the mean over classes of each. 95% intervals: percentile bootstrap over
solutions (within each class; for the overall mean, every class resampled at once).

Items are PRMBench-format JSON lines (`modified_question` or `question`, `modified_process`,
`error_steps` 1-based, `classification`); an error index past the last step (an upstream quirk
in some rows) is ignored. Steps are joined under the pipeline's step rule, as for ProcessBench.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwpipe.errors import InputError
from rwpipe.steps import StepRule

FIELDS = ("modified_process", "error_steps", "classification")
BOOTSTRAP_CI = "percentile bootstrap over solutions, 1000 resamples"
RESAMPLES = 1000


def load_prmbench(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Items of a PRMBench JSONL file as {question, steps, wrong (0-based set), class}; the first
    `limit` per class (0 = all).

    Raises:
        InputError: an unreadable file, a line that is not JSON, an item without the fields.
    """
    path = Path(path)
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        raw = [json.loads(line) for line in lines]
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable PRMBench JSONL file: {exc}") from None
    items: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for i, x in enumerate(raw):
        question = x.get("modified_question") or x.get("question") if isinstance(x, dict) else None
        if not question or any(k not in x for k in FIELDS) or not x["modified_process"]:
            raise InputError(f"{path}: item {i} lacks a question or one of {', '.join(FIELDS)}")
        steps = [str(s) for s in x["modified_process"]]
        kind = str(x["classification"])
        if limit and taken.get(kind, 0) >= limit:
            continue
        taken[kind] = taken.get(kind, 0) + 1
        wrong = {int(k) - 1 for k in x["error_steps"] if 1 <= int(k) <= len(steps)}
        items.append({"question": question, "steps": steps, "wrong": wrong, "class": kind})
    if not items:
        raise InputError(f"{path}: no items")
    return items


def step_f1s(pred_wrong: Sequence[Sequence[bool]], wrong: Sequence[Sequence[bool]]) -> dict:
    """F1 of the correct steps, F1 of the erroneous steps and PRMScore over all steps of the
    given solutions (each a list of per-step flags: True = erroneous). A class with no step of
    one kind gets 0 for that F1."""
    p = np.concatenate([np.asarray(s, bool) for s in pred_wrong]) if pred_wrong else np.zeros(0)
    y = np.concatenate([np.asarray(s, bool) for s in wrong]) if wrong else np.zeros(0)

    def f1(pred: np.ndarray, true: np.ndarray) -> float:
        tp = float(np.sum(pred & true))
        denom = float(np.sum(pred) + np.sum(true))
        return 2 * tp / denom if denom else 0.0

    pos, neg = f1(~p, ~y), f1(p, y)
    return {"f1": pos, "f1_neg": neg, "prmscore": 0.5 * pos + 0.5 * neg}


def prmbench_metrics(pred_wrong: Sequence[Sequence[bool]], items: Sequence[dict[str, Any]],
                     seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Per class and overall: F1, F1_neg and PRMScore with bootstrap intervals (module
    docstring); `solutions` and `steps` counted."""
    truth = [[i in x["wrong"] for i in range(len(x["steps"]))] for x in items]
    classes = sorted({x["class"] for x in items})
    members = {c: [j for j, x in enumerate(items) if x["class"] == c] for c in classes}
    rng = np.random.default_rng(seed)
    draws = {c: rng.integers(0, len(m), (RESAMPLES, len(m))) for c, m in members.items()}
    out: dict[str, Any] = {}
    boot: dict[str, list[dict[str, float]]] = {}
    for c, m in members.items():
        got = step_f1s([pred_wrong[j] for j in m], [truth[j] for j in m])
        boot[c] = [step_f1s([pred_wrong[m[k]] for k in idx], [truth[m[k]] for k in idx])
                   for idx in draws[c]]  # fmt: skip
        out[c] = got | _interval(boot[c]) | {
            "solutions": len(m), "steps": sum(len(truth[j]) for j in m)
        }  # fmt: skip
    overall = {
        k: float(np.mean([out[c][k] for c in classes])) for k in ("f1", "f1_neg", "prmscore")
    }
    means = [{k: float(np.mean([boot[c][r][k] for c in classes])) for k in overall}
             for r in range(RESAMPLES)]  # fmt: skip
    out["overall"] = overall | _interval(means) | {"solutions": len(items),
                                                   "ci_method": BOOTSTRAP_CI}  # fmt: skip
    return out


def _interval(samples: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for k in ("f1", "f1_neg", "prmscore"):
        lo, hi = np.quantile([s[k] for s in samples], [0.025, 0.975])
        out |= {f"{k}_lo": float(lo), f"{k}_hi": float(hi)}
    return out


def evaluate(scorer: Any, items: list[dict[str, Any]], threshold: float, batch_size: int = 8,
             rule: StepRule | None = None) -> dict[str, Any]:  # fmt: skip
    """Score every item's steps with `scorer` (a step scored below `threshold` is erroneous; an
    unscored step, cut by the scorer's max_length, counts as correct) and compute the metrics."""
    from rwpipe.eval.processbench import score_items

    as_pb = [{"problem": x["question"], "steps": x["steps"]} for x in items]
    scores = score_items(scorer, as_pb, batch_size, rule)
    pred = [[i < len(s) and s[i] < threshold for i in range(len(x["steps"]))]
            for x, s in zip(items, scores, strict=True)]  # fmt: skip
    return prmbench_metrics(pred, items) | {"threshold": threshold}
