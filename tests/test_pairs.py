"""Preference pairs: the draw, soft-label margins, the stage, and train-rm on a pairs artifact.

python -m pytest tests/test_pairs.py -q
"""

import json

import pyarrow as pa
import pytest

from rwpipe import artifacts
from rwpipe.pairs import build_pairs
from tests.conftest import run_rwpipe


def _row(pid, idx, outcome, soft, split="train"):
    steps = ["2 + 2 = 4\\n\\n", "so 4"] if outcome else ["2 + 2 = 5\\n\\n", "so 5"]
    return {
        "problem_id": pid, "sample_idx": idx, "split": split, "question": "What is 2 + 2?",
        "prompt": "<Q>", "steps": steps, "gold": "4", "pred": None,
        "verdict": "correct" if outcome else "incorrect", "outcome": outcome, "method": "mc",
        "status": "labelled", "step_hard": [None, None], "step_soft": soft,
        "step_visits": [4, 4], "first_error": None, "completions": 0, "tokens": 0,
        "judge_value": None, "judge_raw": None,
    }  # fmt: skip


ROWS = [
    _row("a", 0, 1, [1.0, 1.0]), _row("a", 1, 0, [0.5, 0.0]), _row("a", 2, 0, [None, None]),
    _row("b", 0, 1, [0.75, 1.0]), _row("b", 1, 1, [1.0, 1.0]),  # no incorrect: no pair
]  # fmt: skip


def test_pairs_are_correct_against_incorrect_with_soft_margins():
    got = build_pairs(ROWS, per_problem=4, seed=0, margin="soft", margin_scale=2.0)
    assert {(p["problem_id"], p["chosen_idx"], p["rejected_idx"]) for p in got} == {
        ("a", 0, 1),
        ("a", 0, 2),
    }
    margins = {p["rejected_idx"]: p["margin"] for p in got}
    assert margins[1] == pytest.approx(2.0 * (1.0 - 0.25)) and margins[2] is None
    assert len(build_pairs(ROWS, per_problem=1, seed=0)) == 1
    assert build_pairs(ROWS, per_problem=4, seed=0) == build_pairs(ROWS, per_problem=4, seed=0)
    assert all(p["margin"] is None for p in build_pairs(ROWS, per_problem=4, seed=0))
    artifacts.validate(pa.Table.from_pylist(got), "pairs", "test")


def test_stage_writes_pairs_and_refuses_labels_without_any(tmp_path, write_params):
    labels = tmp_path / "labels.arrow"
    artifacts.write_artifact(pa.Table.from_pylist(ROWS), labels, "labels")
    params = write_params({"pairs": {"margin": "soft"}})
    out = tmp_path / "pairs.arrow"
    run_rwpipe("pairs", labels, out, "--params", params)
    table = artifacts.read_artifact(out, "pairs")
    assert table.num_rows == 2 and artifacts.artifact_metadata(table)["stats"]["with_margin"] == 1
    only_b = tmp_path / "b.arrow"
    artifacts.write_artifact(pa.Table.from_pylist(ROWS[3:]), only_b, "labels")
    result = run_rwpipe("pairs", only_b, tmp_path / "none.arrow", "--params", params, check=False)
    assert result.returncode == 1 and "no problem has both" in result.stderr
    assert not (tmp_path / "none.arrow").exists()


def test_train_rm_learns_from_a_pairs_artifact_with_margins(tmp_path):
    from rwpipe.config import LoraConfig, OptimConfig, TrainRMConfig
    from rwpipe.model.tiny import build_tiny_lm
    from rwpipe.train import train_reward_model

    rows = [_row(f"p{i}", j, int(j == 0), [1.0 - 0.5 * j, 1.0 - 0.5 * j])
            for i in range(8) for j in range(3)]  # fmt: skip
    pairs = pa.Table.from_pylist(build_pairs(rows, per_problem=2, seed=0, margin="soft"))
    labels = artifacts.validate(pa.Table.from_pylist(rows), "labels", "test")
    cfg = TrainRMConfig(
        loss="bt",
        eval_fraction=0.25,
        lora=LoraConfig(r=4, alpha=8),
        optim=OptimConfig(epochs=1, batch_size=4, lr=1e-3, max_length=64),
    )
    model = build_tiny_lm(tmp_path / "lm", seed=0)
    state, metrics = train_reward_model(
        labels, model, tmp_path / "orm", cfg, seed=0, device="cpu", where="labels.arrow",
        fingerprint="f", pairs=pairs,
    )  # fmt: skip
    # every train problem gives 2 pairs; the held-out problems give none
    assert metrics["train_items"] % 2 == 0 and 0 < metrics["train_items"] < 16
    assert json.loads((tmp_path / "orm" / "rwpipe-model.json").read_text())["kind"] == "orm"
