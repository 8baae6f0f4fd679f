"""Critique targets for generative PRMs: parse(format(labels)) == labels, strict parsing."""

import pytest

from rwpipe.critique import format_critique, parse_critique, stated_labels


@pytest.mark.parametrize(
    ("labels", "verdicts", "first"),
    [
        ([1, 1, 1], [1, 1, 1], -1),
        ([1, 0, None, 1], [1, 0], 1),  # nothing after the first error is stated
        ([0, 1], [0], 0),
        ([1, 1, 0], [1, 1, 0], 2),
    ],
)
def test_round_trip(labels, verdicts, first):
    text = format_critique(labels)
    assert parse_critique(text, len(labels)) == (verdicts, first)
    assert stated_labels(labels) == verdicts
    assert text.count("\\boxed{") == len(verdicts) + 1


def test_incomplete_labels_have_no_critique():
    for labels in ([1, None, 1], [None], []):
        with pytest.raises(ValueError, match="every step labelled"):
            format_critique(labels)


def test_parsing_is_strict():
    good = format_critique([1, 0, 1])
    assert parse_critique(good, 3) == ([1, 0], 1)
    # out of order, unboxed, unknown word, past the last step: the parse stops there
    skipped = good.replace("Step 2:", "Step 3:")
    assert parse_critique(skipped, 3) == ([1], None)
    unboxed = good.replace("\\boxed{incorrect}", "incorrect")
    assert parse_critique(unboxed, 3) == ([1], None)
    odd = good.replace("\\boxed{incorrect}", "\\boxed{maybe}")
    assert parse_critique(odd, 3) == ([1], None)
    assert parse_critique(format_critique([1, 1, 1]), 2) == ([1, 1], None)  # a third step
    # a closing line that contradicts the verdicts, or none at all
    lying = good.replace("is \\boxed{2}.", "is \\boxed{-1}.")
    assert parse_critique(lying, 3) == ([1, 0], None)
    assert parse_critique(good.rsplit("\n", 1)[0], 3) == ([1, 0], None)
    # a "no error" claim must cover every step
    assert parse_critique(format_critique([1, 1]), 3) == ([1, 1], None)
