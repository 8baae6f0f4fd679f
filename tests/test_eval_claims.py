"""The claims table that opens the eval report, and the ProcessBench sample and baselines it
draws on: estimates, intervals and verdicts computed by hand."""

import json
import math

import pytest

from rwpipe.errors import InputError
from rwpipe.eval import processbench
from rwpipe.eval.claims import CONTRADICTED, NULL, SHOWN, claims, headline_rules, verdict
from rwpipe.eval.metrics import processbench as pb_metrics


def _curve(rule, n, per):
    return {"rule": rule, "n": n, "accuracy": sum(per) / len(per), "stderr": 0.0,
            "per_problem": per}  # fmt: skip


def test_verdicts():
    assert verdict(0.01, 0.3) == SHOWN
    assert verdict(-0.3, -0.01) == CONTRADICTED
    assert verdict(-0.1, 0.1) == NULL
    assert verdict(float("nan"), float("nan")) == NULL  # one problem: no interval, no claim


def test_selection_claims_are_paired_per_problem_differences():
    pass1 = [0.5, 0.5, 0.0, 0.5]
    curves = [
        _curve("pass@1", 1, pass1), _curve("majority", 1, pass1),
        _curve("pass@1", 4, pass1),
        _curve("majority", 4, [1.0, 1.0, 0.0, 1.0]),
        _curve("orm", 4, [0.0, 0.0, 0.0, 0.0]),
        _curve("prm_min", 4, [1.0, 1.0, 0.0, 1.0]),
        _curve("prm_last", 4, [0.0, 0.0, 0.0, 0.0]),
    ]  # fmt: skip
    rl = {"delta": 0.1, "delta_ci95_lo": -0.05, "delta_ci95_hi": 0.25, "problems": 64,
          "ci_method": "normal"}  # fmt: skip
    got = claims({"rl_vs_base": rl}, curves, ["orm", "prm"], ["mean", "min", "last"])
    assert list(got) == [
        "rl_raises_pass1", "majority_beats_pass1", "orm_beats_pass1", "orm_beats_majority",
        "prm_min_beats_pass1", "prm_min_beats_majority",
    ]  # fmt: skip
    assert got["rl_raises_pass1"]["verdict"] == NULL
    # differences 0.5, 0.5, 0, 0.5: mean 0.375, sample std 0.25, se 0.125
    maj = got["majority_beats_pass1"]
    assert maj["estimate"] == pytest.approx(0.375)
    assert (maj["ci95_lo"], maj["ci95_hi"]) == pytest.approx((0.375 - 0.245, 0.375 + 0.245))
    assert maj["verdict"] == SHOWN and maj["n"] == 4 and "N=4" in maj["claim"]
    assert got["orm_beats_pass1"]["estimate"] == pytest.approx(-0.375)
    assert got["orm_beats_pass1"]["verdict"] == CONTRADICTED
    # identical per-problem values: difference 0 with a zero-width interval, no claim either way
    same = got["prm_min_beats_majority"]
    assert (same["estimate"], same["ci95_lo"], same["ci95_hi"]) == (0.0, 0.0, 0.0)
    assert same["verdict"] == NULL
    assert "PRM (min)" in got["prm_min_beats_pass1"]["claim"]  # `mean` was not computed


def test_self_consistency_is_claimed_at_every_n_up_to_the_largest():
    pass1 = [0.5, 0.5, 0.0, 0.5]
    curves = [_curve("pass@1", n, pass1) for n in (1, 2, 4, 8)]
    curves += [_curve("majority", 2, [0.5, 0.5, 0.0, 1.0]), _curve("majority", 4, pass1),
               _curve("majority", 8, [1.0, 1.0, 0.0, 1.0])]  # fmt: skip
    got = claims({}, curves)
    assert list(got) == ["majority_beats_pass1_n2", "majority_beats_pass1_n4",
                         "majority_beats_pass1"]  # fmt: skip
    # N=2: differences 0, 0, 0, 0.5: mean 0.125, se 0.125
    two = got["majority_beats_pass1_n2"]
    assert two["estimate"] == pytest.approx(0.125) and "N=2" in two["claim"]
    assert two["ci95_lo"] == pytest.approx(0.125 - 1.96 * 0.125) and two["verdict"] == NULL
    assert got["majority_beats_pass1_n4"]["estimate"] == 0.0
    assert "N=8" in got["majority_beats_pass1"]["claim"]


def test_headline_rule_is_the_first_computed_aggregation():
    curves = [_curve("prm_last", 2, [1.0]), _curve("prm_min", 2, [1.0]), _curve("orm", 2, [1.0])]
    assert headline_rules(curves, ["orm", "prm"], ["prod", "min", "last"]) == {
        "orm": "orm", "prm": "prm_min"
    }  # fmt: skip


def test_no_claims_at_n_1_but_processbench():
    curves = [_curve("pass@1", 1, [1.0, 0.0]), _curve("majority", 1, [1.0, 0.0])]
    pb = {"estimate": -0.2, "ci95_lo": -0.3, "ci95_hi": -0.1, "n": 300, "ci_method": "paired"}
    got = claims({"processbench_vs_outcome_rule": pb, "processbench": {"gsm8k": {}}}, curves)
    assert list(got) == ["prm_beats_outcome_rule"]
    assert got["prm_beats_outcome_rule"]["verdict"] == CONTRADICTED
    assert "gsm8k" in got["prm_beats_outcome_rule"]["claim"]


def test_the_shipped_processbench_sample_loads_with_its_recorded_label_counts():
    subsets = processbench.load_subsets("sample")
    assert list(subsets) == ["gsm8k", "math"]
    assert [len(v) for v in subsets.values()] == [150, 150]
    assert sum(x["label"] == -1 for x in subsets["gsm8k"]) == 77  # as its README records
    assert sum(x["label"] == -1 for x in subsets["math"]) == 61
    assert list(processbench.load_subsets("sample:math", limit=5)) == ["math"]
    assert len(processbench.load_subsets("sample:math", limit=5)["math"]) == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sample:omnimath", "no shipped sample 'omnimath'"),
        ("sample,sample:gsm8k", "a second subset named 'gsm8k'"),
        ("hf:Qwen/ProcessBench", "expected hf:<dataset>:<split>"),
        ("/nonexistent/pb.json", "not a readable ProcessBench JSON file"),
    ],
)
def test_bad_processbench_sources_are_one_line_errors(spec, message):
    with pytest.raises(InputError, match=message):
        processbench.load_subsets(spec)


def test_baselines_by_hand_on_the_sample():
    items = processbench.load_subsets("sample:gsm8k")["gsm8k"]
    labels = [x["label"] for x in items]
    rules = processbench.baseline_predictions(items)
    assert pb_metrics(rules["never flag"], labels) == {"acc_erroneous": 0.0, "acc_correct": 1.0,
                                                       "f1": 0.0}  # fmt: skip
    assert pb_metrics(rules["always flag step 0"], labels)["acc_correct"] == 0.0
    # the outcome rule: right on an erroneous item iff its answer is wrong and step 0 is the error
    hits = sum(not x["final_answer_correct"] and x["label"] == 0 for x in items)
    erroneous = sum(y >= 0 for y in labels)
    ok = sum(x["final_answer_correct"] for x in items if x["label"] == -1) / labels.count(-1)
    a = hits / erroneous
    got = pb_metrics(rules["outcome rule"], labels)
    assert got["acc_erroneous"] == pytest.approx(a)
    assert got["f1"] == pytest.approx(2 * a * ok / (a + ok))
    without = [{k: v for k, v in x.items() if k != "final_answer_correct"} for x in items]
    assert "outcome rule" not in processbench.baseline_predictions(without)


def test_paired_f1_difference():
    labels = [-1, -1, 0, 1, 2, -1]
    same = processbench.paired_f1_difference([-1, 0, 0, 1, 2, -1], [-1, 0, 0, 1, 2, -1], labels)
    assert (same["estimate"], same["ci95_lo"], same["ci95_hi"]) == (0.0, 0.0, 0.0)
    better, worse = [-1, -1, 0, 1, 2, -1], [-1, -1, 1, 0, 0, -1]
    got = processbench.paired_f1_difference(better, worse, labels)
    assert got["estimate"] == pytest.approx(1.0)  # F1 1 against F1 0
    assert got["ci95_lo"] <= got["estimate"] <= got["ci95_hi"] and got["n"] == 6
    assert not math.isnan(got["ci95_lo"])


def test_the_report_opens_with_the_claims(tmp_path):
    from rwpipe.eval.report import write_outputs

    curves = [_curve("pass@1", 2, [0.5, 0.5, 0.0]), _curve("majority", 2, [1.0, 1.0, 0.0])]
    metrics = {"policy": {"pass@1": 0.33}, "claims": claims({}, curves)}
    write_outputs(tmp_path, metrics, curves, {"eval": {}})
    text = (tmp_path / "report.md").read_text()
    assert text.index("## What this run shows") < text.index("## Policy accuracy")
    assert "| majority vote at N=2 beats pass@1 (self-consistency) | +0.333 [" in text
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["claims"]["majority_beats_pass1"]["verdict"] == SHOWN  # 1/3 ± 1.96 * 1/6


def test_a_limit_takes_a_fixed_random_subset_not_the_first_lines(tmp_path):
    # ProcessBench files list erroneous solutions first: a prefix would hold no correct one
    items = [{"id": f"e{i}", "problem": "p", "steps": ["a", "b"], "label": 1} for i in range(10)]
    items += [{"id": f"c{i}", "problem": "p", "steps": ["a", "b"], "label": -1} for i in range(10)]
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(items))
    got = processbench.load_processbench(path, limit=10)
    assert len(got) == 10 and {x["label"] for x in got} == {1, -1}
    assert [x["id"] for x in got] == [x["id"] for x in items if x in got]  # file order kept
    assert got == processbench.load_processbench(path, limit=10)  # the same subset every time
    for name, subset in processbench.load_subsets("sample", limit=64).items():
        labels = [x["label"] for x in subset]
        assert len(labels) == 64 and -1 in labels and max(labels) >= 0, name
