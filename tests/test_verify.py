"""Rule verification: a table of answer formats, and hang-proof checking in worker processes.

python -m pytest tests/test_verify.py -q
"""

import time

import pytest

from rwpipe.verify import Verdict, check_answer, extract_answer, verify_many

# (gold, completion, expected verdict)
FORMATS = [
    ("42", "The answer is 42.", "correct"),
    ("42", "The answer is 43.", "incorrect"),
    ("42", "So 40 + 2 = \\boxed{42}.", "correct"),
    ("42", "So 40 + 3 = \\boxed{43}.", "incorrect"),
    ("42", "#### 42", "correct"),
    ("42", "#### 24", "incorrect"),
    ("42", "First 10, then 20, finally 42", "correct"),
    ("42", "First 42, then 20, finally 41", "incorrect"),
    ("1000", "It costs 1,000 dollars.", "correct"),
    ("1000", "It costs 1,001 dollars.", "incorrect"),
    ("1234567", "Total: 1,234,567", "correct"),
    ("\\frac{1}{2}", "The probability is $\\frac{1}{2}$.", "correct"),
    ("\\frac{1}{2}", "The probability is $\\frac{1}{3}$.", "incorrect"),
    ("\\frac{1}{2}", "\\boxed{0.5}", "correct"),
    ("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", "correct"),
    ("\\frac{3}{4}", "\\boxed{3/4}", "correct"),
    ("0.25", "\\boxed{\\frac{1}{4}}", "correct"),
    ("18", "She earns $\\$18$ per day.", "correct"),
    ("18", "She earns $18 per day.", "correct"),
    ("18", "She earns $19 per day.", "incorrect"),
    ("5", "The length is \\boxed{5 \\text{ cm}}", "correct"),
    ("5", "The length is 5 cm.", "correct"),
    ("-3", "x = -3", "correct"),
    ("-3", "x = 3", "incorrect"),
    ("2\\sqrt{2}", "\\boxed{2\\sqrt{2}}", "correct"),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", "correct"),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{2}}", "incorrect"),
    ("\\pi", "\\boxed{\\pi}", "correct"),
    ("(1, 2)", "\\boxed{(1, 2)}", "correct"),
    ("(1, 2)", "\\boxed{(2, 1)}", "incorrect"),
    ("x^2 + 1", "\\boxed{1 + x^2}", "correct"),
    ("50\\%", "\\boxed{50\\%}", "correct"),
    ("12", "I don't know.", "incorrect"),
    ("12", "", "incorrect"),
    ("12", "12.0", "correct"),
    (None, "The answer is 7.", "unverified"),
]


@pytest.mark.parametrize(("gold", "completion", "expected"), FORMATS)
def test_answer_formats(gold, completion, expected):
    assert check_answer(gold, completion).verdict == expected


def test_format_table_is_broad():
    assert len(FORMATS) >= 30
    assert {v for _, _, v in FORMATS} == {"correct", "incorrect", "unverified"}


def test_extract_answer():
    assert extract_answer("so \\boxed{7}") == "7"
    assert extract_answer("nothing here") is None


ADVERSARIAL = [
    "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",  # deeply nested LaTeX
    "\\boxed{9^{9^{9^{9}}}}",
    "9^9^9^9",
    "1 + " * 25_000 + "1",  # a 100 kB answer
]


def test_adversarial_answers_return_within_timeout_as_unverifiable():
    golds = ["7"] * len(ADVERSARIAL) + ["4"]
    completions = [*ADVERSARIAL, "2 + 2 = \\boxed{4}"]
    start = time.monotonic()
    verdicts = verify_many(golds, completions, timeout_s=2.0, workers=2)
    elapsed = time.monotonic() - start
    assert verdicts[-1] == Verdict("correct", "4")
    for v in verdicts[:-1]:
        assert v.verdict in ("unverifiable", "incorrect"), v
    assert any(v.verdict == "unverifiable" for v in verdicts)
    # Every item is bounded by its deadline; worker restarts cost a few seconds each.
    assert elapsed < 2.0 * len(completions) + 30


def test_verify_many_keeps_order_and_counts_progress():
    done = []
    golds = [str(i) for i in range(6)]
    completions = [f"\\boxed{{{i if i % 2 else i + 1}}}" for i in range(6)]
    verdicts = verify_many(golds, completions, timeout_s=10, workers=2, progress=done.append)
    assert [v.verdict for v in verdicts] == ["incorrect", "correct"] * 3
    assert sum(done) == 6
