"""The pairwise judge: both orders asked, position bias cancelled, RewardBench-style accuracy by
hand, and the eval's claim and report."""

import pytest

from rwpipe.eval.judge_pairs import correct_incorrect_pairs, pairwise_judge_accuracy
from rwpipe.judge import judge_pairs, pairwise_message
from rwpipe.judge.parse import parse_choice


class ContentJudge:
    """Prefers the solution containing "right", whatever its position; records the messages."""

    def __init__(self):
        self.messages = []

    def complete(self, messages, n, temperature, max_tokens, seed):
        self.messages += messages
        out = []
        for m in messages:
            first = m.split("Solution A:")[1].split("Solution B:")[0]
            out.append(["\\boxed{A}" if "right" in first else "\\boxed{B}"] * n)
        return out


class PositionJudge:
    """Always says A: pure position bias."""

    def complete(self, messages, n, temperature, max_tokens, seed):
        return [["I pick \\boxed{A}"] * n for _ in messages]


def test_parse_choice_is_strict():
    assert (
        parse_choice("so \\boxed{A}") == "A" and parse_choice("\\boxed{\\text{Solution B}}") == "B"
    )
    assert parse_choice("\\boxed{C}") is None and parse_choice("A") is None


def test_both_orders_are_asked_and_position_bias_becomes_a_tie():
    items = [("q", "right answer 4", "wrong answer 5"), ("q", "wrong 3", "right 4")]
    judge = ContentJudge()
    got = judge_pairs(judge, items, k=1, temperature=0, max_tokens=32, seed=0)
    assert [g.preferred for g in got] == ["x", "y"]
    assert judge.messages[0] == pairwise_message("q", "right answer 4", "wrong answer 5")
    assert judge.messages[1] == pairwise_message("q", "wrong answer 5", "right answer 4")
    biased = judge_pairs(PositionJudge(), items, k=1, temperature=0, max_tokens=32, seed=0)
    assert [g.preferred for g in biased] == ["tie", "tie"]


def test_accuracy_ties_abstentions_and_position_rate_by_hand():
    rows = [{"problem_id": p, "sample_idx": i, "question": "q", "completion": c,
             "verdict": v} for p, i, c, v in [
        ("p1", 0, "right 4", "correct"), ("p1", 1, "wrong 5", "incorrect"),
        ("p1", 2, "wrong 6", "incorrect"), ("p2", 0, "wrong 1", "incorrect"),
        ("p2", 1, "right 2", "correct"), ("p3", 0, "right", "correct"),
    ]]  # fmt: skip
    pairs = correct_incorrect_pairs(rows)
    assert [(p, a, b) for p, _, a, b in pairs] == [
        ("p1", "right 4", "wrong 5"),
        ("p1", "right 4", "wrong 6"),
        ("p2", "right 2", "wrong 1"),
    ]  # fmt: skip  (p3 has no incorrect sample)
    judged = judge_pairs(ContentJudge(), [(q, a, b) for _, q, a, b in pairs], k=1,
                         temperature=0, max_tokens=32, seed=0)  # fmt: skip
    got = pairwise_judge_accuracy([p for p, *_ in pairs], judged)
    assert got["accuracy"] == 1.0 and got["pairs"] == 3 and got["problems"] == 2
    assert got["position_a_rate"] == pytest.approx(0.5)  # 3 A's and 3 B's over both orders
    biased = judge_pairs(PositionJudge(), [(q, a, b) for _, q, a, b in pairs], k=1,
                         temperature=0, max_tokens=32, seed=0)  # fmt: skip
    got = pairwise_judge_accuracy([p for p, *_ in pairs], biased)
    assert got["accuracy"] == 0.5 and got["ties"] == 3 and got["position_a_rate"] == 1.0


def test_the_judge_claim_and_report(tmp_path):
    from rwpipe.eval.claims import claims
    from rwpipe.eval.report import write_outputs

    judge = {"pairs": 40, "problems": 20, "accuracy": 0.8, "ci95_lo": 0.7, "ci95_hi": 0.9,
             "ci_method": "bootstrap", "ties": 2, "abstained": 1,
             "position_a_rate": 0.55}  # fmt: skip
    metrics = {"pairwise_judge": judge}
    metrics["claims"] = claims(metrics, [])
    c = metrics["claims"]["judge_beats_chance"]
    assert (c["estimate"], c["ci95_lo"], c["verdict"]) == (pytest.approx(0.3), pytest.approx(0.2),
                                                           "shown")  # fmt: skip
    write_outputs(tmp_path, metrics, [], {})
    text = (tmp_path / "report.md").read_text()
    assert "## Pairwise LLM judge" in text and "| 0.800 [0.700, 0.900] | 40 | 20 | 2 | 1 |" in text
