"""Intervals that mean what they say: pairwise accuracy's interval bootstraps the pooled
accuracy it reports, and every interval in metrics.json and report.md names its method.

python -m pytest tests/test_eval_intervals.py -q
"""

import json
import random

import numpy as np
import pytest

from rwpipe.eval.curves import (
    compare_policies,
    pairwise_accuracy,
    pairwise_table,
    selection_curves,
)


def _row(pid, idx, correct, pred="1"):
    return {"problem_id": pid, "sample_idx": idx, "pred": pred, "num_tokens": 10,
            "verdict": "correct" if correct else "incorrect"}  # fmt: skip


def _key(r):
    return (r["problem_id"], r["sample_idx"])


def test_pairwise_interval_stays_in_0_1_and_holds_the_estimate():
    # A: one pair, lost; B: 100 pairs, all won. Pooled 100/101; the per-problem accuracies
    # (0 and 1) have a spread of 0.5 standard errors, so estimate ± 1.96 SE reached 1.97
    rows = [_row("A", 0, True), _row("A", 1, False)]
    rows += [_row("B", i, i < 10) for i in range(20)]
    right = {_key(r): float((r["verdict"] == "correct") == (r["problem_id"] == "B")) for r in rows}
    got = pairwise_accuracy(rows, lambda r: right[_key(r)])
    assert got["accuracy"] == pytest.approx(100 / 101) and got["pairs"] == 101
    # resamples are AA (0), AB (100/101) or BB (1), a quarter, a half and a quarter of the time
    assert (got["ci95_lo"], got["ci95_hi"]) == (0.0, 1.0)
    assert got["ci_method"].startswith("percentile bootstrap over problems, 1000 resamples")


def test_pairwise_interval_is_the_bootstrap_of_the_pooled_accuracy():
    # problems with many pairs are ranked well, those with few badly: the pooled accuracy
    # (0.83) is far from the mean of the per-problem accuracies (0.55)
    rng = random.Random(0)
    rows, score = [], {}
    for p in range(30):
        big = p % 2 == 0
        n_good, n_bad = (8, 8) if big else (1, 2)
        for i in range(n_good + n_bad):
            r = _row(f"p{p}", i, i < n_good)
            rows.append(r)
            good = i < n_good
            hit = rng.random() < (0.85 if big else 0.25)
            score[_key(r)] = rng.random() + (1.0 if good == hit else 0.0)
    got = pairwise_accuracy(rows, lambda r: score[_key(r)])
    # the same bootstrap computed here, independently (another seed, more resamples)
    wins, pairs = [], []
    for p in range(30):
        g = [
            score[_key(r)] for r in rows if r["problem_id"] == f"p{p}" and r["verdict"] == "correct"
        ]
        b = [
            score[_key(r)] for r in rows if r["problem_id"] == f"p{p}" and r["verdict"] != "correct"
        ]
        wins.append(sum((x > y) + 0.5 * (x == y) for x in g for y in b))
        pairs.append(len(g) * len(b))
    wins, pairs = np.array(wins), np.array(pairs)
    assert got["accuracy"] == pytest.approx(wins.sum() / pairs.sum())
    assert abs(got["accuracy"] - np.mean(wins / pairs)) > 0.2
    idx = np.random.default_rng(12345).integers(0, 30, (20000, 30))
    lo, hi = np.quantile(wins[idx].sum(1) / pairs[idx].sum(1), [0.025, 0.975])
    assert got["ci95_lo"] == pytest.approx(lo, abs=0.015)
    assert got["ci95_hi"] == pytest.approx(hi, abs=0.015)
    assert 0 <= got["ci95_lo"] < got["accuracy"] < got["ci95_hi"] <= 1


def _intervals_without_method(node, path="metrics"):
    """Paths of the dicts in `node` that hold an interval bound but no `ci_method`."""
    out = []
    if isinstance(node, dict):
        bounds = [k for k in node if k.endswith(("_lo", "_hi"))]
        if bounds and "ci_method" not in node:
            out.append(f"{path} ({', '.join(bounds)})")
        for k, v in node.items():
            out += _intervals_without_method(v, f"{path}.{k}")
    return out


def test_every_interval_names_its_method(tmp_path):
    from rwpipe.eval.processbench import protocol
    from rwpipe.eval.report import write_outputs

    rows = [_row("a", i, i < 2, pred=str(i % 3)) for i in range(4)]
    rows += [_row("b", i, i == 0, pred=str(i)) for i in range(4)]
    rl = [_row("a", i, True) for i in range(4)] + [_row("b", i, i < 2) for i in range(4)]
    prm = {_key(r): (None, [0.9, 0.2 + 0.1 * r["sample_idx"]]) for r in rows}
    curves = selection_curves(rows, [1, 4], {"prm": prm}, ("min",), draws=5)
    metrics = {
        "policy": {"pass@1": 0.375},
        "rl_vs_base": compare_policies(rows, rl),
        "pairwise": pairwise_table(rows, {"prm": prm}, ("min",)),
        "processbench": {"gsm8k": protocol([-1, 2, 0], [-1, 2, 1]) | {"threshold_rule": "fixed"},
                         "average": {"acc_erroneous": 0.5, "acc_correct": 1.0, "f1": 0.67}},
        "search": {"problems": 2, "accuracy": 0.5, "stderr": 0.1, "tokens_per_problem": 30.0,
                   "bon_n": 2, "bon_tokens_per_problem": 20.0, "bon_accuracy": 0.5,
                   "bon_stderr": 0.1, "bon_budget_short": False, "config": "beam 2 x 2"},
    }  # fmt: skip
    write_outputs(tmp_path, metrics, curves, {"eval": "test"})
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert _intervals_without_method(written) == []
    assert written["pairwise"]["prm_min"]["ci_method"].startswith("percentile bootstrap over "
                                                                  "problems")  # fmt: skip
    assert written["rl_vs_base"]["ci_method"].startswith("normal approximation")
    assert written["processbench"]["gsm8k"]["ci_method"] == (
        "percentile bootstrap over solutions, 1000 resamples"
    )
    report = (tmp_path / "report.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in report.split("\n## ")}

    def section(prefix):
        return next(v for k, v in sections.items() if k.startswith(prefix))

    assert "(95% CI, normal approximation: mean ± 1.96 standard errors of the paired" in section(
        "Base policy against the RL policy"
    )
    assert "95% CI: normal approximation: ± 1.96 standard errors over problems" in section(
        "Selection at N"
    )
    assert "95% CI: percentile bootstrap over problems, 1000 resamples" in section("Pairwise")
    assert "95% CI: normal approximation: ± 1.96 standard errors over problems" in section(
        "PRM-guided search"
    )
    assert "95% CI: percentile bootstrap over solutions, 1000 resamples" in section("ProcessBench")
