"""PRMBench: loading, F1 / negative F1 / PRMScore by hand, intervals, and the eval's report."""

import json

import pytest

from rwpipe.errors import InputError
from rwpipe.eval.prmbench import evaluate, load_prmbench, prmbench_metrics, step_f1s


def _item(cls, steps, errors, q="What is 2+2?"):
    return {"modified_question": q, "modified_process": steps, "error_steps": errors,
            "classification": cls, "idx": "x"}  # fmt: skip


def test_step_f1s_by_hand():
    # 6 steps: truth W . . W . . ; prediction W W . . . .
    pred = [[True, True, False], [False, False, False]]
    truth = [[True, False, False], [True, False, False]]
    got = step_f1s(pred, truth)
    # erroneous class: tp 1, predicted 2, true 2 -> F1 0.5; correct class: tp 3, pred 4, true 4
    assert got["f1_neg"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(0.75)
    assert got["prmscore"] == pytest.approx(0.625)
    never = step_f1s([[False] * 3, [False] * 3], truth)  # a PRM that flags nothing
    assert never["f1_neg"] == 0.0 and never["f1"] == pytest.approx(2 * 4 / (6 + 4))


def test_metrics_per_class_overall_mean_and_intervals():
    items = [
        {"question": "q", "steps": ["a", "b"], "wrong": {1}, "class": "circular"},
        {"question": "q", "steps": ["a", "b"], "wrong": {0}, "class": "circular"},
        {"question": "q", "steps": ["a", "b", "c"], "wrong": {2}, "class": "redundency"},
    ]
    perfect = [[False, True], [True, False], [False, False, True]]
    got = prmbench_metrics(perfect, items)
    assert got["circular"]["prmscore"] == got["redundency"]["prmscore"] == 1.0
    assert got["overall"]["prmscore"] == 1.0 and got["overall"]["prmscore_lo"] == 1.0
    wrong_half = [[False, True], [False, True], [False, False, True]]
    got = prmbench_metrics(wrong_half, items)
    c = got["circular"]  # steps: truth . W W . ; pred . W . W -> neg F1 0.5, pos F1 0.5
    assert (c["f1"], c["f1_neg"], c["prmscore"]) == pytest.approx((0.5, 0.5, 0.5))
    assert got["overall"]["prmscore"] == pytest.approx((0.5 + 1.0) / 2)
    assert c["prmscore_lo"] <= c["prmscore"] <= c["prmscore_hi"]
    assert (c["solutions"], c["steps"]) == (2, 4) and got["overall"]["solutions"] == 3


def test_loader_reads_the_format_and_refuses_bad_files(tmp_path):
    path = tmp_path / "prmbench.jsonl"
    rows = [_item("circular", ["1. a", "2. b"], [2]), _item("circular", ["1. a"], [1, 5]),
            _item("deception", ["1. a", "2. b"], [1])]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_prmbench(path)
    assert [x["wrong"] for x in items] == [{1}, {0}, {0}]  # 1-based, past-the-end ignored
    assert [x["class"] for x in load_prmbench(path, limit=1)] == ["circular", "deception"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"modified_process": ["a"]}) + "\n")
    with pytest.raises(InputError, match="bad.jsonl: item 0 lacks"):
        load_prmbench(bad)
    (tmp_path / "junk.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="junk.jsonl: not a readable PRMBench JSONL"):
        load_prmbench(tmp_path / "junk.jsonl")


def test_shared_prmbench_sample_loads_when_present():
    from tests.conftest import ROOT

    path = ROOT.parent / "shared" / "data" / "prmbench" / "prmbench_prm800k_test.jsonl"
    if not path.exists():
        pytest.skip("../shared/data/prmbench is not beside this checkout")
    items = load_prmbench(path, limit=3)
    assert len({x["class"] for x in items}) == 8 and len(items) == 24
    assert all(x["wrong"] and max(x["wrong"]) < len(x["steps"]) for x in items)


def test_evaluate_with_a_scripted_scorer():
    class Scorer:  # marks a step wrong when it says "bad"
        def score(self, solutions, batch_size, advance=None):
            out = []
            for s in solutions:
                steps = [0.1 if "bad" in t else 0.9 for t in s.steps]
                out.append((steps[-1], steps))
            return out

    items = [{"question": "q", "steps": ["good", "bad"], "wrong": {1}, "class": "c"},
             {"question": "q", "steps": ["bad", "good"], "wrong": {1}, "class": "c"}]  # fmt: skip
    got = evaluate(Scorer(), items, threshold=0.5)
    # truth . W . W ; pred . W W . -> neg F1 0.5, pos F1 0.5
    assert got["c"]["prmscore"] == pytest.approx(0.5) and got["threshold"] == 0.5
