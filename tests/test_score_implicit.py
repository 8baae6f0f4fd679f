"""A saved implicit PRM scores with its own reference policy: trained (LoRA) on outcomes that a
marker in the steps makes learnable, saved, then scored through `rwpipe score` on held-out
problems, it gives non-zero step rewards that rank correct solutions above incorrect ones.

python -m pytest tests/test_score_implicit.py -q
"""

import json

import pyarrow as pa
import pytest
import torch

from rwpipe import artifacts
from rwpipe.config import LoraConfig, OptimConfig, TrainPRMConfig
from rwpipe.errors import InputError
from rwpipe.model.tiny import build_tiny_lm
from rwpipe.train import train_reward_model
from rwpipe.train.metrics import roc_auc
from tests.conftest import run_rwpipe

# correct solutions say "ok" at every step, incorrect ones "no": the outcome is learnable
WORDS = {1: "ok", 0: "no"}


def _row(pid: str, idx: int, outcome: int, n: int, split: str = "train") -> dict:
    w = WORDS[outcome]
    steps = [f"{n}+{idx} {w}\n\n", f"= {n + idx + outcome} {w}\n\n", f"so {n} {w}"]
    return {
        "problem_id": pid, "sample_idx": idx, "split": split, "question": f"q{n}",
        "prompt": f"<Q{n}>", "steps": steps, "gold": "7", "pred": None,
        "verdict": "correct" if outcome else "incorrect", "outcome": outcome,
        "method": "mc", "status": "labelled", "step_hard": [None] * 3, "step_soft": [None] * 3,
        "step_visits": [0] * 3, "first_error": -1, "completions": 0, "tokens": 0,
        "judge_value": None, "judge_raw": None,
    }  # fmt: skip


def _labels(problems: range, split: str = "train") -> pa.Table:
    rows = [_row(f"p{n}", i, o, n, split) for n in problems for i, o in enumerate((1, 0, 1, 0))]
    return artifacts.validate(pa.Table.from_pylist(rows), "labels", "test")


CFG = TrainPRMConfig(
    kind="implicit", beta=0.1, eval_fraction=0.2, dtype="float32",
    optim=OptimConfig(epochs=4, lr=5e-3, batch_size=8, warmup_ratio=0.0, max_length=64,
                      checkpoint_every=1000),
    lora=LoraConfig(r=8, alpha=16),
)  # fmt: skip


@pytest.fixture(scope="module")
def implicit_prm(tmp_path_factory):
    """(the saved implicit PRM's directory, its base model's directory)."""
    root = tmp_path_factory.mktemp("implicit")
    base = build_tiny_lm(root / "base", seed=0)
    out = root / "prm"
    train_reward_model(_labels(range(12)), base, out, CFG, seed=0, device="cpu",
                       where="labels.arrow", fingerprint="f")  # fmt: skip
    return out, base


def test_saved_implicit_prm_scores_with_its_reference(implicit_prm, tmp_path):
    prm, _ = implicit_prm
    held = tmp_path / "held.arrow"
    artifacts.write_artifact(_labels(range(100, 106), split="eval"), held, "labels")
    out = tmp_path / "scores.arrow"
    run_rwpipe("score", held, prm, out, "--device", "cpu")
    rows = artifacts.read_artifact(out, "scores").to_pylist()
    held_rows = _labels(range(100, 106), split="eval").to_pylist()
    truth = {(r["problem_id"], r["sample_idx"]): r["outcome"] for r in held_rows}
    assert {r["kind"] for r in rows} == {"implicit_prm"}
    steps = [s for r in rows for s in r["step_scores"]]
    assert len(steps) == 3 * len(rows) and sum(abs(s) > 1e-4 for s in steps) == len(steps)
    outcome = [r["outcome_score"] for r in rows]
    labels = [truth[(r["problem_id"], r["sample_idx"])] for r in rows]
    assert roc_auc(outcome, labels) > 0.9
    # step level too: the sum of a correct solution's step rewards beats an incorrect one's
    assert roc_auc([sum(r["step_scores"]) for r in rows], labels) > 0.9


def test_the_directory_travels_and_a_missing_or_changed_reference_is_refused(
    implicit_prm, tmp_path
):
    import shutil

    from transformers import AutoModelForCausalLM

    from rwpipe.score import Scorer, Solution, detect_format

    prm, base = implicit_prm
    card = json.loads((prm / "rwpipe-model.json").read_text())
    assert card["reference"]["path"] == "reference" and len(card["reference"]["sha256"]) == 64
    # the reference is the base model's weights, not the trained (merged) ones
    ref, pi, want = (AutoModelForCausalLM.from_pretrained(d).state_dict()
                     for d in (prm / "reference", prm, base))  # fmt: skip
    assert all(torch.equal(ref[k], want[k]) for k in want)
    assert not all(torch.equal(pi[k], want[k]) for k in want)
    assert "reference/" in (prm / "README.md").read_text()
    moved = tmp_path / "elsewhere" / "prm"  # self-contained: a copy scores the same
    shutil.copytree(prm, moved)
    sol = [Solution("q", "<Q1>", ["1+1 ok\n\n", "= 2 ok"])]
    cpu = torch.device("cpu")
    assert Scorer(moved, device=cpu).score(sol) == Scorer(prm, device=cpu).score(sol)

    weights = next((moved / "reference").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    with pytest.raises(InputError, match=r"elsewhere/prm/reference: .*differ"):
        Scorer(moved, device=cpu)
    shutil.rmtree(moved / "reference")
    with pytest.raises(InputError, match=r"elsewhere/prm/reference: .*reference model is missing"):
        detect_format(moved)  # what eval and rl check before loading anything
    artifacts.write_artifact(_labels(range(1)), tmp_path / "in.arrow", "labels")
    result = run_rwpipe("score", tmp_path / "in.arrow", moved, tmp_path / "o.arrow", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and str(moved / "reference") in lines[0]
    assert not (tmp_path / "o.arrow").exists()
    # a card from before the reference was kept: refused, not scored as zeros
    old = {k: v for k, v in card.items() if k != "reference"}
    (moved / "rwpipe-model.json").write_text(json.dumps(old))
    with pytest.raises(InputError, match="saved without its reference model"):
        detect_format(moved)


@pytest.mark.parametrize("start", [0, 1, 6, 10])
def test_window_log_probs_equal_the_whole_sequence_ones_from_the_window_on(implicit_prm, start):
    """Implicit-PRM and SFT losses and scores run the lm_head from the first response position
    on: those positions' log-probs must be the whole-sequence ones, the others zero."""
    from transformers import AutoModelForCausalLM

    from rwpipe.train.losses import token_logprobs, window_token_logprobs

    model = AutoModelForCausalLM.from_pretrained(implicit_prm[1]).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding
    with torch.no_grad():
        whole = token_logprobs(model(input_ids=ids, attention_mask=mask).logits, ids)
        window = window_token_logprobs(model, ids, mask, start)
    assert window.shape == whole.shape
    torch.testing.assert_close(window[:, start:], whole[:, start:], rtol=1e-5, atol=1e-5)
    assert not window[:, :start].any()
