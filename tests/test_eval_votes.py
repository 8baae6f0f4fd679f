"""Selection and votes: score kinds (probabilities vs an implicit PRM's signed log-ratio
rewards), one rule for NaN scores and ties whatever the sample order, and equivalent answers
(math-verify) voting together.

python -m pytest tests/test_eval_votes.py -q
"""

import itertools
import math

import pytest

from rwpipe.eval.curves import pairwise_table, selection_curves, skipped_rules
from rwpipe.eval.metrics import (
    aggregate,
    best_of_n,
    pick_best,
    pick_majority,
    undefined,
    vote_weights,
)


def _row(pid, idx, pred, correct):
    return {"problem_id": pid, "sample_idx": idx, "pred": pred, "num_tokens": 10,
            "verdict": "correct" if correct else "incorrect"}  # fmt: skip


def _at(curves, rule, n):
    return next(c["accuracy"] for c in curves if c["rule"] == rule and c["n"] == n)


# -- score kinds ---------------------------------------------------------------------------------


def test_log_ratio_weights_are_a_softmax_by_hand():
    got = vote_weights([-1.0, -1.5, -1.6], "log_ratio")
    z = 1 + math.exp(-0.5) + math.exp(-0.6)
    assert got == pytest.approx([1 / z, math.exp(-0.5) / z, math.exp(-0.6) / z])
    # the same winner and weights when every reward shifts by a constant
    assert vote_weights([4.0, 3.5, 3.4], "log_ratio") == pytest.approx(got)
    assert vote_weights([0.2, float("nan")], "probability") == [0.2, 0.0]
    assert vote_weights([float("nan"), -3.0], "log_ratio") == [0.0, 1.0]
    with pytest.raises(ValueError, match="outside"):
        vote_weights([1.5], "probability")


def test_weighted_vote_over_negative_rewards_is_no_random_pick():
    # every reward is negative: clamped at 0 they all weighed nothing and the vote was a
    # random pick; as softmax weights the one high reward (-0.1: weight 1 against
    # e^-1.9 + e^-2.4 = 0.24) outvotes the two low ones
    group = [("4", True, -0.1), ("5", False, -2.0), ("5", False, -2.5)]
    for perm in itertools.permutations(group):
        assert pick_majority(perm, weighted=True, kind="log_ratio") == 1.0
        assert pick_majority(perm, weighted=False) == 0.0
    # two close rewards outvote a slightly higher one: 1 < e^-0.5 + e^-0.6 = 1.156
    split = [("4", True, -1.0), ("5", False, -1.5), ("5", False, -1.6)]
    assert pick_majority(split, weighted=True, kind="log_ratio") == 0.0
    # through the curves, with the kind given per model: N = 3 is every sample, so exact
    rows = [_row("a", i, a, c) for i, (a, c, _) in enumerate(group)]
    prm = {("a", i): (None, [0.5, s]) for i, (_, _, s) in enumerate(group)}
    curves = selection_curves(rows, [3], {"prm": prm}, ("last",), draws=20,
                              kinds={"prm": "log_ratio"})  # fmt: skip
    assert _at(curves, "prm_last_weighted", 3) == 1.0 and _at(curves, "majority", 3) == 0.0
    assert _at(curves, "prm_last", 3) == 1.0


def test_undefined_aggregations_are_refused_and_skipped_with_the_reason():
    signed = [0.4, -1.2, 0.3]
    assert aggregate(signed, "sum", "log_ratio") == pytest.approx(-0.5)
    assert aggregate(signed, "min", "log_ratio") == -1.2
    assert aggregate(signed, "mean", "log_ratio") == pytest.approx(-0.5 / 3)
    with pytest.raises(ValueError, match="prod of log_ratio step scores"):
        aggregate(signed, "prod", "log_ratio")
    with pytest.raises(ValueError, match="sum of probability step scores"):
        aggregate([0.9, 0.8], "sum")
    assert undefined("prod", "probability") is None and undefined("last", "log_ratio") is None

    rows = [_row("a", 0, "4", True), _row("a", 1, "5", False)]
    implicit = {("a", 0): (0.6, [0.2, 0.1]), ("a", 1): (0.4, [-0.3, 0.1])}
    prm = {("a", 0): (0.9, [0.9, 0.9]), ("a", 1): (0.5, [0.5, 0.5])}
    scores, kinds = {"ip": implicit, "prm": prm}, {"ip": "log_ratio"}
    aggs = ("min", "prod", "sum")
    rules = {c["rule"] for c in selection_curves(rows, [2], scores, aggs, draws=2, kinds=kinds)}
    assert {"ip_min", "ip_min_weighted", "ip_sum", "ip_sum_weighted"} <= rules
    assert {"prm_min", "prm_prod", "prm_prod_weighted"} <= rules
    assert not {"ip_prod", "ip_prod_weighted", "prm_sum", "prm_sum_weighted"} & rules
    assert set(pairwise_table(rows, scores, aggs, kinds)) == {"ip_min", "ip_sum", "prm_min",
                                                              "prm_prod"}  # fmt: skip
    skipped = skipped_rules(scores, aggs, kinds)
    assert set(skipped) == {"ip_prod", "prm_sum"}
    assert skipped["ip_prod"].startswith("prod of log_ratio step scores: a product of signed")


# -- NaN and ties: one rule, whatever the order ---------------------------------------------------


def test_nan_scores_and_ties_give_one_result_in_every_order():
    nan = float("nan")
    for perm in itertools.permutations([0.5, nan, 0.3]):
        for how in ("min", "last", "prod", "mean"):
            assert math.isnan(aggregate(list(perm), how))
    # an unscored sample never wins; two samples tied at the top share the credit
    subset = [("1", True, nan), ("2", False, 0.2), ("3", True, 0.7), ("4", False, 0.7)]
    votes = [("4", True, nan), ("5", False, 0.3), ("4", True, 0.3)]
    for perm in itertools.permutations(subset):
        assert pick_best(perm) == 0.5
    for perm in itertools.permutations(votes):
        # NaN casts no vote: "4" and "5" tie at 0.3, one of the two tied answers is correct
        assert pick_majority(perm, weighted=True) == 0.5
        assert pick_majority(perm, weighted=True, kind="log_ratio") == 0.5
        assert pick_majority(perm, weighted=False) == 1.0  # "4" has two votes
    assert pick_best([("a", True, nan), ("b", False, nan)]) == 0.5  # all unscored: a tie
    # through the curves: every row order gives the same numbers (N = 4: every sample; not
    # pass@1, a random sample by definition)
    rows = [_row("a", i, a, c) for i, (a, c, _) in enumerate(subset)]
    prm = {("a", i): (None, [0.9, s]) for i, (_, _, s) in enumerate(subset)}
    want = None
    for perm in itertools.permutations(rows):
        got = selection_curves(list(perm), [4], {"prm": prm}, ("min", "last"), draws=7, seed=3)
        got = [(c["rule"], c["accuracy"]) for c in got if c["rule"] != "pass@1"]
        want = want or got
        assert got == want
    assert dict(want) == {"majority": 0.5,  # four answers, one vote each: 2 of 4 correct
                          "prm_min": 0.5, "prm_min_weighted": 0.5,  # 0.7 and 0.7 tie
                          "prm_last": 0.5, "prm_last_weighted": 0.5}  # fmt: skip
    # best_of_n over groups in any order of their samples
    group = [("4", True, 0.3), ("5", False, 0.3), ("6", False, nan)]
    means = {best_of_n([list(p)], 3, pick_best, draws=5)[0] for p in itertools.permutations(group)}
    assert means == {0.5}


# -- equivalent answers ---------------------------------------------------------------------------


def _math_verify_classes(answers):
    """The test's own grouping: connected components of math-verify's pairwise judgement."""
    from math_verify import parse, verify

    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    parsed = {a: parse(f"${a}$") for a in distinct}
    label = {a: a for a in distinct}
    for a, b in itertools.combinations(distinct, 2):
        if verify(parsed[a], parsed[b]) or verify(parsed[b], parsed[a]):
            old, new = label[b], label[a]
            label = {k: new if v == old else v for k, v in label.items()}
    return label


def _maj_at_all(groups, weights=None):
    """maj@k with k = every sample, computed here: vote on math-verify classes, the top
    classes share the credit; `weights` (per sample) for a weighted vote."""
    accs = []
    for g_i, group in enumerate(groups):
        label = _math_verify_classes([a for a, _ in group])
        totals, right = {}, {}
        for s_i, (a, ok) in enumerate(group):
            if a is None:
                continue
            w = 1.0 if weights is None else weights[g_i][s_i]
            totals[label[a]] = totals.get(label[a], 0.0) + w
            right[label[a]] = right.get(label[a], False) or ok
        top = [c for c, t in totals.items() if math.isclose(t, max(totals.values()))]
        accs.append(sum(right[c] for c in top) / len(top))
    return sum(accs) / len(accs)


def test_equivalent_answers_vote_together():
    groups = {
        # gold 1/2: three spellings of it against two votes for 3
        "h": [("\\frac12", True), ("3", False), ("0.5", True), ("3", False), ("1/2", True)],
        # gold 3: "x=3" and "3" are one answer (2 votes) against "4" and "4"; a tie
        "t": [("x=3", True), ("4", False), ("3", True), ("4", False), (None, False)],
        # integers compared without math-verify: "04" is 4
        "i": [("04", True), ("7", False), ("4", True), ("7", False), ("8", False)],
    }
    rows = [_row(pid, i, a, ok) for pid, g in groups.items() for i, (a, ok) in enumerate(g)]
    want = _maj_at_all([groups[p] for p in sorted(groups)])
    assert want == pytest.approx((1 + 0.5 + 0.5) / 3)
    # a vote on identical strings would have given h: "3" (0), t: "4" (0), i: "7" (0)
    prm = {(r["problem_id"], r["sample_idx"]): (None, [0.6 if r["pred"] == "3" else 0.3])
           for r in rows}  # fmt: skip
    curves = selection_curves(rows, [5], {"prm": prm}, ("last",), draws=3)
    assert _at(curves, "majority", 5) == pytest.approx(want)
    # weighted: in h the halves total 0.9 against 1.2 for "3"; t: "3" (0.6) + "x=3" (0.3)
    # against 0.6 for "4"; i: 0.6 for "04" and "4" against 0.6 for "7", a tie
    weights = [[prm[(p, i)][1][0] for i in range(5)] for p in sorted(groups)]
    want_weighted = _maj_at_all([groups[p] for p in sorted(groups)], weights)
    assert want_weighted == pytest.approx((0 + 1 + 0.5) / 3)
    assert _at(curves, "prm_last_weighted", 5) == pytest.approx(want_weighted)


def test_answers_equal_in_killable_workers():
    from rwpipe.verify import answers_equal, same_answer

    pairs = [("\\frac12", "0.5"), ("0.5", "1/2"), ("2", "3"), ("x=3", "3"), ("1,000", "1000")]
    assert answers_equal(pairs, workers=1) == [True, True, False, True, True]
    assert same_answer("\\frac{1}{3}", "0.333").verdict == "incorrect"
    assert answers_equal([]) == []


# -- the eval stage with an implicit PRM -----------------------------------------------------------


@pytest.fixture(scope="module")
def implicit_prm(tmp_path_factory):
    """A tiny implicit PRM whose pi differs from its pi_ref, so its rewards are signed."""
    import torch

    from rwpipe.model.tiny import build_tiny_lm
    from rwpipe.train.backbone import load_backbone, save_backbone

    tmp = tmp_path_factory.mktemp("implicit")
    base = build_tiny_lm(tmp / "lm")
    torch.manual_seed(0)
    bb = load_backbone(base, "implicit_prm", device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        for p in bb.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    save_backbone(bb, tmp / "prm", {"metrics": {}})
    return base, tmp / "prm"


def test_eval_with_an_implicit_prm_uses_log_ratio_rules(tmp_path, implicit_prm):
    import json

    import pyarrow as pa
    import torch

    from rwpipe import artifacts
    from rwpipe.config import BaseConfig, EvalConfig, SearchConfig
    from rwpipe.errors import InputError
    from rwpipe.eval import run
    from rwpipe.schemas import SPECS
    from rwpipe.score import Scorer, Solution

    policy, prm_dir = implicit_prm
    answers = {"a": ["4", "4", "5", "6"], "b": ["1", "2", "2", "3"], "c": ["7", "8", "9", "7"]}
    rows = [
        {"problem_id": pid, "sample_idx": i, "split": "eval", "question": f"q {pid}",
         "prompt": f"<p>{pid}", "completion": f"s{i}\n\nt {a}", "token_ids": [1] * 5,
         "logprobs": [-0.5] * 5, "finish_reason": "stop", "num_tokens": 5,
         "steps": [f"s{i} {pid}\n\n", f"the answer is {a}"], "pred": a, "gold": g[0],
         "verdict": "correct" if a == g[0] else "incorrect", "seed": 0}
        for pid, g in answers.items() for i, a in enumerate(g)
    ]  # fmt: skip
    path = tmp_path / "r.arrow"
    artifacts.write_artifact(
        pa.Table.from_pylist(rows, schema=SPECS["rollouts"].schema), path, "rollouts"
    )
    base = BaseConfig(seed=0, device="cpu")
    cfg = EvalConfig(ns=(4,), draws=2)
    metrics = run(cfg, base, rollouts=path, out=tmp_path / "eval", prm=prm_dir)
    assert metrics["score_kinds"] == {"prm": "log_ratio"}
    assert metrics["skipped"]["prm_prod"].startswith("prod of log_ratio step scores")
    assert set(metrics["pairwise"]) == {"prm_min", "prm_last", "prm_mean"}
    assert not any("prod" in rule for rule in metrics["best_of_n"])
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Rules not computed" in report and "| prm_prod | prod of log_ratio" in report
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics

    # the softmax-weighted vote at N = 4 (every sample), from the scorer's own scores
    scorer = Scorer(prm_dir, device=torch.device("cpu"))
    got = scorer.score([Solution(r["question"], r["prompt"], r["steps"]) for r in rows])
    assert any(s < 0 for _, steps in got for s in steps)  # signed rewards
    accs = []
    for pid, group in answers.items():
        mins = [min(got[i][1]) for i, r in enumerate(rows) if r["problem_id"] == pid]
        totals = {}
        for a, m in zip(group, mins, strict=True):
            totals[a] = totals.get(a, 0.0) + math.exp(m)
        accs.append(float(max(totals, key=totals.get) == group[0]))
    assert metrics["best_of_n"]["prm_min_weighted"] == pytest.approx(sum(accs) / 3)

    # beam search with an aggregation undefined for the PRM: one line, before the policy loads
    bad = EvalConfig(ns=(4,), search=SearchConfig(problems=1, aggregation="prod"))
    with pytest.raises(InputError, match="eval.search.aggregation prod: a product of signed"):
        run(bad, base, rollouts=path, out=tmp_path / "bad", prm=prm_dir, policy=policy)
