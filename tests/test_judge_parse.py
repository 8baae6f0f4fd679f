"""Judge output parsing over realistic outputs: well-formed, malformed, several boxes, out of
range, refusals.

python -m pytest tests/test_judge_parse.py -q
"""

import pytest

from rwpipe.judge.parse import last_boxed, parse_first_error, parse_verdict

VERDICT_CASES = [
    ("The final answer 12 matches the reference.\n\n\\boxed{correct}", "correct"),
    ("Verdict: \\boxed{Incorrect}", "incorrect"),
    ("\\boxed{\\text{correct}}", "correct"),
    ("$\\boxed{yes}$.", "correct"),
    ("Is it \\boxed{correct}? No. Final: \\boxed{incorrect}", "incorrect"),  # last box counts
    ("The solution is correct.", None),  # no box: abstain
    ("\\boxed{}", None),
    ("\\boxed{maybe}", None),
    ("\\boxed{12}", None),  # an answer, not a verdict
    ("I'm sorry, but I can't help with that.", None),
    ("\\boxed{correct", None),  # unbalanced
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), VERDICT_CASES)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


SENTENCE_CASES = [  # verdict_parse: boxed_or_sentence; what SmolLM2-135M writes as a judge
    ("The answer is correct.", "correct"),
    ("36 + 44 = 80\n\nThe correct answer is correct.", "correct"),
    ("The answer is incorrect.", "incorrect"),
    ("Verdict: Incorrect", "incorrect"),
    ("Correct.", "correct"),
    ("The answer is not correct.", None),  # negated: abstain rather than guess
    ("It isn't correct", None),
    ("The solution is correct.\nBut step 2 is wrong", None),  # only the last line counts
    ("36 + 44 = 80", None),
    ("correct or incorrect? \\boxed{incorrect}", "incorrect"),  # a box still wins
    ("The answer is correctly computed as 80.", None),
]


@pytest.mark.parametrize(("text", "expected"), SENTENCE_CASES)
def test_parse_verdict_from_a_final_sentence(text, expected):
    assert parse_verdict(text, sentence=True) == expected
    if last_boxed(text) is None:
        assert parse_verdict(text) is None  # strict mode never reads sentences


STEP_CASES = [
    ("Step 2 divides by zero. \\boxed{2}", 5, 2),
    ("All steps are right. \\boxed{-1}", 5, -1),
    ("\\boxed{ 0 }", 3, 0),
    ("paragraph \\boxed{1} looks odd, but actually the error is in \\boxed{3}", 5, 3),
    ("\\boxed{7}", 5, None),  # out of range
    ("\\boxed{-2}", 5, None),
    ("\\boxed{two}", 5, None),
    ("\\boxed{2.5}", 5, None),
    ("The first error is in step 2.", 5, None),
    ("I cannot evaluate this.", 5, None),
]


@pytest.mark.parametrize(("text", "steps", "expected"), STEP_CASES)
def test_parse_first_error(text, steps, expected):
    assert parse_first_error(text, steps) == expected


def test_last_boxed_handles_nesting():
    assert last_boxed("\\boxed{\\frac{1}{2}} then \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{a} \\boxed{b") == "a"
