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


def _label_row(idx, steps, hard, split="train"):
    return {"problem_id": "p1", "sample_idx": idx, "split": split, "question": "What is 2+3?",
            "prompt": "<p>", "steps": steps, "step_hard": hard}  # fmt: skip


def test_template_rows_make_a_valid_critiques_artifact():
    import pyarrow as pa

    from rwpipe import artifacts
    from rwpipe.critique import template_rows

    labels = [
        _label_row(0, ["2+3=5\n\n", "So 5."], [1, 1]),
        _label_row(1, ["2+3=6\n\n", "So 6."], [0, None]),
        _label_row(2, ["2+3=5\n\n", "So 5."], [None, None]),  # outcome only: no critique
        _label_row(3, ["2+3=5\n\n", "So 5."], [1]),  # labels shorter than the steps
    ]
    rows = template_rows(labels)
    assert [r["sample_idx"] for r in rows] == [0, 1]
    assert [(r["step_verdicts"], r["first_error"]) for r in rows] == [([1, 1], -1), ([0], 0)]
    for r in rows:
        assert parse_critique(r["critique"], len(r["steps"])) == (
            r["step_verdicts"], r["first_error"]
        )  # fmt: skip
    table = artifacts.validate(pa.Table.from_pylist(rows), "critiques", "test")
    assert table.num_rows == 2 and set(table["source"].to_pylist()) == {"template"}
