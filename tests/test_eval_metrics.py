"""Evaluation metrics against hand-computed examples.

python -m pytest tests/test_eval_metrics.py -q
"""

import math

import pytest

from rwpipe.eval.metrics import (
    aggregate,
    best_of_n,
    first_error,
    majority_vote,
    pass_at_k,
    pick_best,
    pick_majority,
    processbench,
)


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_majority_vote_ties_abstentions_and_weights():
    assert majority_vote(["3", "4", "4", "3"]) == "3"  # tie: the first seen wins
    assert majority_vote([None, "5", None]) == "5"
    assert majority_vote([None, None]) is None
    assert majority_vote(["3", "4", "4"], [0.9, 0.2, 0.3]) == "3"


def test_aggregations_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "min") == 0.5 and aggregate(s, "last") == 0.8
    assert aggregate(s, "prod") == pytest.approx(0.36)
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert math.isnan(aggregate([], "min"))


def test_first_error_threshold():
    assert first_error([0.9, 0.4, 0.2], 0.5) == 1
    assert first_error([0.9, 0.6], 0.5) == -1


def test_processbench_f1_by_hand_and_degenerate_subsets():
    labels = [-1, -1, 2, 0, 1]
    pred = [-1, 3, 2, 1, 1]
    r = processbench(pred, labels)
    assert r["acc_correct"] == 0.5 and r["acc_erroneous"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    all_correct = processbench([-1, -1], [-1, -1])
    assert all_correct["acc_correct"] == 1.0 and math.isnan(all_correct["f1"])
    all_wrong = processbench([0, 0], [1, 2])
    assert all_wrong["acc_erroneous"] == 0.0 and math.isnan(all_wrong["acc_correct"])
    assert processbench([0, 0], [-1, 1])["f1"] == 0.0  # both subsets present, both missed


def test_best_of_n_selection_rules():
    # one problem: the highest score is wrong, the majority answer is right
    group = [("4", True, 0.2), ("4", True, 0.3), ("5", False, 0.9)]
    mean, _ = best_of_n([group], 3, pick_best, draws=5)
    assert mean == 0.0
    assert best_of_n([group], 3, lambda s: pick_majority(s, weighted=False), draws=5)[0] == 1.0
    # weighted: "4" totals 0.5, "5" 0.9
    assert best_of_n([group], 3, lambda s: pick_majority(s, weighted=True), draws=5)[0] == 0.0
    # a confident minority answer beats two weak votes only when weighted
    split = [("4", True, 0.6), ("5", False, 0.2), ("5", False, 0.3)]
    assert best_of_n([split], 3, lambda s: pick_majority(s, weighted=False), draws=3)[0] == 0.0
    assert best_of_n([split], 3, lambda s: pick_majority(s, weighted=True), draws=3)[0] == 1.0
    # n = 1 is mean accuracy; the standard error is over problems
    mean, se = best_of_n([group, [("1", False, 0.5)]], 1, pick_best, draws=300, seed=1)
    assert mean == pytest.approx((2 / 3 + 0) / 2, abs=0.05) and se > 0


def test_processbench_for_an_llm_critic_counts_abstentions_as_wrong():
    from rwpipe.eval.processbench import average_subsets, evaluate_critic

    class Critic:  # replies with the index it is scripted to give, per item
        def __init__(self, replies):
            self.replies = replies

        def complete(self, messages, n, temperature, max_tokens, seed):
            return [[r] for r in self.replies]

    items = [
        {"problem": "p", "steps": ["a", "b", "c"], "label": 1},
        {"problem": "p", "steps": ["a", "b"], "label": -1},
        {"problem": "p", "steps": ["a", "b"], "label": -1},
    ]
    got = evaluate_critic(Critic(["\\boxed{1}", "\\boxed{-1}", "I cannot tell"]), items)
    assert got["abstained"] == 1 and got["acc_erroneous"] == 1.0
    assert got["acc_correct"] == 0.5 and got["f1"] == pytest.approx(2 * 0.5 / 1.5)
    avg = average_subsets({"gsm8k": got, "math": got | {"f1": 0.0}})
    assert avg["f1"] == pytest.approx(got["f1"] / 2)


def test_threshold_tuned_on_a_named_split_by_hand():
    from rwpipe.eval.processbench import tune_threshold

    # item 0 is wrong at step 1, item 1 is all correct, item 2 is wrong at step 0
    scores = [[0.9, 0.3, 0.8], [0.7, 0.6], [0.4, 0.9]]
    labels = [1, -1, 0]
    # t = 0.4 flags only 0.3 (item 0 right, item 2 missed); t = 0.6 flags 0.3 and 0.4, leaves
    # item 1 alone: both erroneous and the correct one right, F1 = 1, the smallest such t wins
    t, f1 = tune_threshold(scores, labels)
    assert t == 0.6 and f1 == 1.0
    # a split where every step looks the same: the best a threshold can do is flag all or none
    t, f1 = tune_threshold([[0.5], [0.5]], [0, -1])
    assert f1 == 0.0 and t == 0.5


def test_threshold_tuning_on_a_reported_subset_is_refused(tmp_path):
    from rwpipe.config import EvalConfig

    with pytest.raises(ValueError, match="reported processbench subset"):
        EvalConfig(processbench=f"{tmp_path}/gsm8k.json,{tmp_path}/math.json",
                   threshold_tune=f"{tmp_path}/../{tmp_path.name}/math.json")  # fmt: skip
    EvalConfig(processbench=f"{tmp_path}/gsm8k.json", threshold_tune=f"{tmp_path}/dev.json")
    with pytest.raises(ValueError, match="reported processbench subset .*sample:math"):
        EvalConfig(processbench="sample", threshold_tune="sample:math")
    EvalConfig(processbench="sample:gsm8k", threshold_tune="sample:math")
