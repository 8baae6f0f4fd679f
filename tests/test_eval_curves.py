"""Policy accuracy and selection curves on hand-made rollouts.

python -m pytest tests/test_eval_curves.py -q
"""

import pytest

from rwpipe.eval.curves import (
    compare_policies,
    pairwise_accuracy,
    pairwise_table,
    policy_accuracy,
    selection_curves,
)


def _row(pid, idx, pred, correct, tokens=10):
    return {"problem_id": pid, "sample_idx": idx, "pred": pred, "num_tokens": tokens,
            "verdict": "correct" if correct else "incorrect"}  # fmt: skip


ROWS = [
    _row("a", 0, "4", True), _row("a", 1, "4", True), _row("a", 2, "5", False),
    _row("a", 3, "6", False),
    _row("b", 0, "1", False), _row("b", 1, "2", False), _row("b", 2, "3", True),
    _row("b", 3, "1", False, tokens=30),
]  # fmt: skip


def test_policy_accuracy_by_hand():
    acc = policy_accuracy(ROWS, ks=[1, 2, 8])
    assert acc["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    # a: 1 - C(2,2)/C(4,2) = 5/6; b: 1 - C(3,2)/C(4,2) = 1/2
    assert acc["pass@2"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert "pass@8" not in acc and acc["mean_tokens"] == pytest.approx(100 / 8)


def test_selection_curves_rules_and_values():
    # an ORM that ranks the correct samples first, and a PRM that ranks them last
    orm = {(r["problem_id"], r["sample_idx"]): (1.0 if r["verdict"] == "correct" else 0.0, [])
           for r in ROWS}  # fmt: skip
    prm = {k: (None, [0.9, 1 - v]) for k, (v, _) in orm.items()}
    curves = selection_curves(ROWS, [1, 4], {"orm": orm, "prm": prm}, ("min",), draws=20)
    get = {(c["rule"], c["n"]): c["accuracy"] for c in curves}
    assert get[("orm", 4)] == 1.0 and get[("prm_min", 4)] == 0.0
    assert get[("majority", 4)] == pytest.approx(0.5)  # a: "4" wins; b: "1" wins (wrong)
    assert get[("pass@1", 4)] == pytest.approx(0.375, abs=0.15)
    assert ("prm_min_weighted", 4) in get and ("orm_min", 4) not in get


def test_processbench_protocol_with_a_scripted_scorer(tmp_path):
    import json

    from rwpipe.errors import InputError
    from rwpipe.eval.processbench import evaluate, load_processbench

    items = [
        {"problem": "p1", "steps": ["a", "b", "c"], "label": 1},
        {"problem": "p2", "steps": ["a", "b"], "label": -1},
        {"problem": "p3", "steps": ["a", "b"], "label": -1},
    ]
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(items))
    loaded = load_processbench(path)

    class Scorer:  # flags every step containing "b"
        def score(self, solutions, batch_size, advance=None):
            return [(None, [0.1 if "b" in s else 0.9 for s in sol.steps]) for sol in solutions]

    r = evaluate(Scorer(), loaded, threshold=0.5)
    assert (r["acc_erroneous"], r["acc_correct"], r["f1"]) == (1.0, 0.0, 0.0)
    assert r["threshold_rule"] == "fixed 0.5" and r["solutions"] == 3
    # the threshold tuned on another split, and the rule recorded with the result
    from rwpipe.eval.processbench import score_items, tune_threshold

    t, f1 = tune_threshold(score_items(Scorer(), loaded), [1, -1, -1])
    assert (t, f1) == (0.1, 0.0)  # "b" is in every solution: no threshold separates them
    with pytest.raises(InputError, match="both erroneous and correct"):
        tune_threshold(score_items(Scorer(), loaded[:1]), [1])
    r = evaluate(Scorer(), loaded, t, threshold_rule=f"tuned on dev: {t}")
    assert r["threshold"] == t and r["threshold_rule"] == f"tuned on dev: {t}"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem": "x", "steps": ["a"], "label": 3}]))
    with pytest.raises(InputError, match="item 0 has label 3 for 1 steps"):
        load_processbench(bad)
    (tmp_path / "junk.json").write_text("[{")
    with pytest.raises(InputError, match="junk.json: not a readable"):
        load_processbench(tmp_path / "junk.json")


def test_compare_policies_pairs_problems_by_hand():
    rl = [_row("a", i, "4", True) for i in range(4)] + [
        _row("b", 0, "3", True), _row("b", 1, "3", True), _row("c", 0, "9", True),
    ]  # fmt: skip
    got = compare_policies(ROWS, rl)  # c is not in the base rollouts: left out
    assert got["problems"] == 2
    assert got["pass@1_base"] == pytest.approx(0.375) and got["pass@1_rl"] == pytest.approx(1.0)
    # d = [1 - 1/2, 1 - 1/4] = [0.5, 0.75]: mean 0.625, sd 0.1768, half-width 1.96 * 0.125
    assert got["delta"] == pytest.approx(0.625)
    assert got["delta_ci95_hi"] - got["delta"] == pytest.approx(1.96 * 0.125, abs=1e-4)
    with pytest.raises(ValueError, match="share no problem"):
        compare_policies(ROWS, [_row("z", 0, "1", True)])


def test_pairwise_accuracy_by_hand():
    # a: correct {0, 1}, incorrect {2, 3}; b: correct {2}, incorrect {0, 1, 3}
    score = {("a", 0): 0.9, ("a", 1): 0.2, ("a", 2): 0.5, ("a", 3): 0.1,
             ("b", 0): 0.3, ("b", 1): 0.3, ("b", 2): 0.3, ("b", 3): 0.0}  # fmt: skip
    got = pairwise_accuracy(ROWS, lambda r: score[(r["problem_id"], r["sample_idx"])])
    # a: 0.9 beats both, 0.2 beats 0.1 only -> 3/4; b: ties 0.5 + 0.5, beats 0.0 -> 2/3
    assert got["pairs"] == 7 and got["problems"] == 2
    assert got["accuracy"] == pytest.approx((3 + 2) / 7)
    assert got["ci95_lo"] < got["accuracy"] < got["ci95_hi"]
    table = pairwise_table(ROWS, {"prm": {k: (None, [v, 1.0]) for k, v in score.items()}},
                           ["min", "last"])  # fmt: skip
    assert table["prm_min"]["accuracy"] == pytest.approx(5 / 7)
    assert table["prm_last"]["accuracy"] == pytest.approx(0.5)  # all 1.0: every pair ties


@pytest.mark.parametrize(
    ("how", "pattern", "sep"),
    [("blank_line", "", "\n\n"), ("line", "", "\n"), ("regex", r"\n(?=Step \d)", "\n")],
)
def test_processbench_joins_bare_steps_under_the_step_rule(how, pattern, sep):
    from rwpipe.eval.processbench import evaluate, score_items
    from rwpipe.steps import StepRule

    rule = StepRule(how, pattern)
    seen = []

    class Scorer:  # records the steps it is given
        def score(self, solutions, batch_size, advance=None):
            seen.extend(list(s.steps) for s in solutions)
            return [(None, [0.9] * len(s.steps)) for s in solutions]

    items = [{"problem": "p", "steps": ["Step 1: a", "Step 2: b", "Step 3: c"], "label": -1}]
    score_items(Scorer(), items, rule=rule)
    evaluate(Scorer(), items, 0.5, rule=rule)
    want = ["Step 1: a" + sep, "Step 2: b" + sep, "Step 3: c"]
    assert seen == [want, want] and rule.split("".join(want)) == want
