"""The one definition of a step: splitting re-joins to the completion exactly.

python -m pytest tests/test_steps.py -q
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rwpipe.steps import join_steps, prefix, split_steps, step_text


def test_blank_lines_split_steps_and_keep_separators():
    text = "Step 1: 2+2=4.\n\nStep 2: 4*3=12.\n\n\nThe answer is \\boxed{12}."
    steps = split_steps(text)
    assert steps == ["Step 1: 2+2=4.\n\n", "Step 2: 4*3=12.\n\n\n", "The answer is \\boxed{12}."]
    assert [step_text(s) for s in steps][0] == "Step 1: 2+2=4."
    assert prefix(steps, 2) == "Step 1: 2+2=4.\n\nStep 2: 4*3=12.\n\n\n"


def test_single_newlines_do_not_split_by_default():
    assert split_steps("a\nb\n\nc") == ["a\nb\n\n", "c"]


def test_line_mode():
    assert split_steps("a\nb\n\nc", "line") == ["a\n", "b\n\n", "c"]


def test_regex_mode():
    assert split_steps("x ки y ки z", "regex", r" ки ") == ["x ки ", "y ки ", "z"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("one", ["one"]),
        ("\n\nlead", ["\n\nlead"]),
        ("trail\n\n", ["trail\n\n"]),
        ("a\n  \nb", ["a\n  \n", "b"]),
    ],
)
def test_edge_cases(text, expected):
    assert split_steps(text) == expected


@given(
    st.text(alphabet=st.sampled_from("ab \n\t"), max_size=60),
    st.sampled_from(["blank_line", "line"]),
)
def test_steps_always_rejoin_and_are_non_empty(text, how):
    steps = split_steps(text, how)
    assert join_steps(steps) == text
    assert all(steps)
