"""Reward-model training: losses against hand-computed values, label masks, batching, one
optimizer step, exact resume, and the whole trainer on a tiny random model.

python -m pytest tests/test_train.py -q
"""

import math

import pyarrow as pa
import pytest
import torch

from rwpipe import artifacts
from rwpipe.config import LoraConfig, OptimConfig, TrainPRMConfig, TrainRMConfig
from rwpipe.errors import InputError
from rwpipe.model.tiny import build_tiny_lm, build_tiny_tokenizer
from rwpipe.train import train_reward_model
from rwpipe.train.backbone import Backbone, load_backbone
from rwpipe.train.data import (
    Example,
    encode_solution,
    length_grouped_batches,
    pad_batch,
    preference_pairs,
    prm_examples,
    split_by_group,
)
from rwpipe.train.losses import (
    bradley_terry_loss,
    implicit_prm_loss,
    pointwise_bce_loss,
    response_mask,
    step_bce_loss,
    token_logprobs,
)
from rwpipe.train.metrics import roc_auc


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- losses ------------------------------------------------------------------------------------


def test_bradley_terry_by_hand():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert float(loss) == pytest.approx((-math.log(_sig(1)) - math.log(_sig(-1))) / 2, abs=1e-6)
    margin = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.5]))
    assert float(margin) == pytest.approx(-math.log(_sig(0.5)), abs=1e-6)


def test_pointwise_bce_by_hand():
    loss = pointwise_bce_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]))
    assert float(loss) == pytest.approx((math.log(2) - math.log(1 - _sig(2))) / 2, abs=1e-6)


def test_step_bce_counts_only_masked_positions():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, -3.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.25], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[0, 0, 1], [1, 0, 0]])
    expected = (
        -(0.25 * math.log(_sig(1)) + 0.75 * math.log(1 - _sig(1))) - math.log(1 - _sig(2))
    ) / 2
    assert float(step_bce_loss(logits, targets, mask)) == pytest.approx(expected, abs=1e-6)
    assert float(step_bce_loss(logits, targets, torch.zeros_like(mask))) == 0.0


def test_implicit_prm_loss_by_hand():
    # two response tokens with log-ratios 1.0 and -0.5; beta 0.5 -> r = 0.25; outcome 1
    policy = torch.tensor([[-1.0, -1.0, -2.0]])
    ref = torch.tensor([[-3.0, -2.0, -1.5]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss = implicit_prm_loss(policy, ref, mask, torch.tensor([1.0]), beta=0.5)
    assert float(loss) == pytest.approx(-math.log(_sig(0.25)), abs=1e-6)


def test_token_logprobs_gather_the_next_token():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]]]))
    ids = torch.tensor([[0, 1, 0]])
    got = token_logprobs(logits, ids)
    # position 0 predicts token 1 (id 1: p=0.5), position 1 predicts token 2 (id 0: p=0.9)
    assert torch.allclose(got, torch.log(torch.tensor([[0.5, 0.9]])), atol=1e-6)


def test_roc_auc_by_hand():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


# -- data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_encode_solution_marks_each_step_end(tokenizer):
    steps = ["a+b\n\n", "= c\n\n", "so 7"]
    enc = encode_solution(tokenizer, "<Q>", steps, step_tag="")
    assert tokenizer.decode(enc.input_ids) == "<Q>" + "".join(steps)
    text_so_far = "<Q>"
    for end, step in zip(enc.step_ends, steps, strict=True):
        text_so_far += step
        assert tokenizer.decode(enc.input_ids[: end + 1]) == text_so_far
    tagged = encode_solution(tokenizer, "<Q>", steps, step_tag="#")
    assert all(tagged.input_ids[e] == tokenizer.encode("#")[0] for e in tagged.step_ends)
    short = encode_solution(tokenizer, "<Q>", steps, max_length=12)
    assert len(short.step_ends) == 1 and len(short.input_ids) <= 12


def _label_row(pid, idx, steps, hard, soft=None, outcome=0, split="train"):
    return {
        "problem_id": pid, "sample_idx": idx, "split": split, "question": "q",
        "prompt": "<Q>", "steps": steps, "gold": "7", "pred": None,
        "verdict": "correct" if outcome else "incorrect", "outcome": outcome,
        "method": "mc", "status": "labelled", "step_hard": hard,
        "step_soft": soft or [None if h is None else float(h) for h in hard],
        "step_visits": [4] * len(steps), "first_error": -1, "completions": 0, "tokens": 0,
        "judge_value": None, "judge_raw": None,
    }  # fmt: skip


def test_prm_examples_targets_and_skips(tokenizer):
    rows = [
        _label_row("p", 0, ["x\n\n", "y"], [1, 0], [0.5, 0.0]),
        _label_row("p", 1, ["x\n\n", "y"], [None, None]),  # nothing to learn: skipped
        _label_row("q", 0, ["x\n\n", "z"], [1, None], [None, None], outcome=1),
    ]
    hard = prm_examples(rows, tokenizer, soft=False, step_tag="", max_length=0)
    soft = prm_examples(rows, tokenizer, soft=True, step_tag="", max_length=0)
    assert [e.step_targets for e in hard] == [[1.0, 0.0], [1.0, None]]
    assert [e.step_targets for e in soft] == [[0.5, 0.0], [1.0, None]]  # hard where no MC


def test_batches_are_seeded_complete_and_length_grouped():
    lengths = [5, 100, 7, 98, 6, 99, 8, 97]
    a = length_grouped_batches(lengths, 2, seed=1, epoch=0)
    assert a == length_grouped_batches(lengths, 2, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 2, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(8))
    assert all(abs(lengths[b[0]] - lengths[b[-1]]) <= 3 for b in a)  # long with long


def test_pairs_and_heldout_split_keep_problems_together():
    ex = [Example([1], 0, outcome=o, group=g, key=(g, i)) for i, (g, o) in enumerate(
        [("a", 1), ("a", 0), ("a", 0), ("b", 1), ("b", 1), ("c", 0)]
    )]  # fmt: skip
    pairs = preference_pairs(ex, per_problem=5, seed=0)
    assert len(pairs) == 2 and all(c.outcome == 1 and r.outcome == 0 for c, r in pairs)
    assert all(c.group == r.group == "a" for c, r in pairs)
    train, held = split_by_group(ex, [e.group for e in ex], 0.5, seed=0)
    assert {e.group for e in train}.isdisjoint({e.group for e in held})


# -- models and the loop on a tiny random Llama --------------------------------------------------


class _Probe(torch.nn.Module):
    """A 'model' whose logits are a parameter, to see where a loss sends gradient."""

    def __init__(self, batch: int, seq: int) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(batch, seq, 1))

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": self.table[:, : input_ids.shape[1]]})()


def test_prm_loss_sends_gradient_only_to_labelled_step_ends(tokenizer):
    probe = _Probe(2, 6)
    backbone = Backbone("prm", probe, tokenizer, torch.device("cpu"))
    batch = [
        Example([1] * 6, 1, step_ends=[2, 5], step_targets=[1.0, None]),
        Example([1] * 4, 1, step_ends=[1, 3], step_targets=[0.0, 1.0]),
    ]
    backbone.loss(batch, "step").backward()
    nonzero = {tuple(i) for i in probe.table.grad.squeeze(-1).nonzero().tolist()}
    assert nonzero == {(0, 2), (1, 1), (1, 3)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


def _labels(problems=6) -> pa.Table:
    rows = []
    for p in range(problems):
        rows.append(_label_row(f"p{p}", 0, ["2+2\n\n", "=4\n\n", "so 4"], [1, 1, 1], outcome=1))
        rows.append(_label_row(f"p{p}", 1, ["2+2\n\n", "=5\n\n", "so 5"], [1, 0, None]))
        rows.append(_label_row(f"p{p}", 2, ["2*2\n\n", "=3\n\n", "so 3"], [1, 0, None]))
    rows.append(_label_row("e0", 0, ["1+1\n\n", "so 2"], [None, None], outcome=1, split="eval"))
    return artifacts.validate(pa.Table.from_pylist(rows), "labels", "test")


OPTIM = OptimConfig(epochs=2, lr=1e-3, batch_size=4, checkpoint_every=2, max_length=64)
NO_LORA = LoraConfig(enabled=False)


@pytest.mark.parametrize(
    ("kind", "objective"),
    [("prm", "step"), ("orm", "pointwise"), ("orm", "bt"), ("implicit_prm", "implicit")],
)
def test_one_optimizer_step_changes_every_trainable_parameter(tiny_dir, kind, objective):
    torch.manual_seed(0)
    backbone = load_backbone(tiny_dir, kind, device=torch.device("cpu"), dtype=torch.float32,
                             lora=NO_LORA)  # fmt: skip
    rows = _labels().to_pylist()
    ex = prm_examples(rows, backbone.tokenizer, soft=False, step_tag="", max_length=64)
    batch = [(ex[0], ex[1])] if objective == "bt" else ex[:3]
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    opt = torch.optim.AdamW(backbone.model.parameters(), lr=1e-3)
    loss = backbone.loss(batch, objective)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    unchanged = [n for n, p in backbone.model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_pad_batch_rounds_the_width_up_to_the_multiple():
    ids, mask = pad_batch([[5, 6, 7], [8] * 9], 0, multiple=8)
    assert [len(r) for r in ids] == [16, 16] and ids[0][:4] == [5, 6, 7, 0]
    assert mask == [[1] * 3 + [0] * 13, [1] * 9 + [0] * 7]
    assert pad_batch([[1] * 16], 0, multiple=8)[0] == [[1] * 16]  # already a multiple
    assert [len(r) for r in pad_batch([[1, 2], [3]], 0)[0]] == [2, 2]  # 1: to the longest


def test_padding_stops_at_the_models_position_limit():
    from types import SimpleNamespace

    from rwpipe.train.backbone import Backbone

    assert len(pad_batch([[1] * 9], 0, multiple=8, limit=12)[0][0]) == 12  # not 16
    assert len(pad_batch([[1] * 9], 0, multiple=8, limit=5)[0][0]) == 9  # never truncates
    # A model whose limit (40) is not a multiple of 32: 33 tokens pad to 40, not 64.
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=40))
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=2)
    backbone = Backbone("orm", model, tokenizer, torch.device("cpu"), pad_multiple=32)
    ids, mask = backbone.tensors([[1] * 33, [1] * 3])
    assert ids.shape == mask.shape == (2, 40) and int(mask.sum()) == 36


@pytest.mark.parametrize(
    ("kind", "objective"),
    [("prm", "step"), ("orm", "pointwise"), ("orm", "bt"), ("implicit_prm", "implicit")],
)
def test_padding_to_a_multiple_changes_no_score_or_loss(tiny_dir, kind, objective):
    """Extra right padding (`optim.pad_to_multiple_of`) is masked: every kind's scores and
    loss are those of the batch padded to its longest sequence only."""
    torch.manual_seed(0)
    backbone = load_backbone(tiny_dir, kind, device=torch.device("cpu"), dtype=torch.float32,
                             lora=NO_LORA)  # fmt: skip
    rows = _labels().to_pylist()
    ex = prm_examples(rows, backbone.tokenizer, soft=False, step_tag="", max_length=64)
    batch = [(ex[0], ex[1]), (ex[2], ex[1])] if objective == "bt" else ex[:4]
    got = {}
    for multiple in (1, 32):
        backbone.pad_multiple = multiple
        width = backbone.tensors([e.input_ids for e in ex[:4]])[0].shape[1]
        assert width % multiple == 0 and (multiple == 1) == (width < 32)
        with torch.no_grad():
            got[multiple] = (backbone.loss(batch, objective), backbone.score(ex[:4]))
    torch.testing.assert_close(got[32][0], got[1][0], rtol=1e-5, atol=1e-6)
    for (o32, s32), (o1, s1) in zip(got[32][1], got[1][1], strict=True):
        assert o32 == pytest.approx(o1, abs=1e-5) and s32 == pytest.approx(s1, abs=1e-5)


def _train(tmp_path, model_dir, cfg, stop=None, labels=None):
    return train_reward_model(
        _labels() if labels is None else labels, model_dir, tmp_path / "model", cfg,
        seed=0, device="cpu", where="labels.arrow", fingerprint="f", stop_after_steps=stop,
    )  # fmt: skip


def test_killed_run_resumes_to_the_same_loss_sequence(tmp_path, tiny_dir):
    cfg = TrainPRMConfig(optim=OPTIM)
    full, metrics = _train(tmp_path / "a", tiny_dir, cfg)
    assert full.step >= 4 and metrics["steps"] == full.step
    partial, _ = _train(tmp_path / "b", tiny_dir, cfg, stop=3)
    assert partial.step == 3 and (tmp_path / "b" / "model.parts" / "ckpt").is_dir()
    resumed, _ = _train(tmp_path / "b", tiny_dir, cfg)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert not (tmp_path / "b" / "model.parts").exists()


@pytest.mark.parametrize(
    "cfg",
    [
        TrainPRMConfig(optim=OPTIM, targets="soft", step_tag=" #"),
        TrainPRMConfig(optim=OPTIM, kind="implicit"),
        TrainRMConfig(optim=OPTIM, loss="bt"),
        TrainRMConfig(optim=OPTIM, loss="pointwise", lora=NO_LORA),
    ],
    ids=["prm-soft-tag", "implicit", "orm-bt", "orm-pointwise-full"],
)
def test_trainer_saves_a_loadable_model_with_metrics(tmp_path, tiny_dir, cfg):
    import json

    from safetensors.torch import load_file
    from transformers import AutoConfig

    _, metrics = _train(tmp_path, tiny_dir, cfg)
    out = tmp_path / "model"
    card = json.loads((out / "rwpipe-model.json").read_text())
    assert card["kind"] == metrics["kind"] and (out / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(out).architectures[0].startswith("Llama")
    assert not any("lora" in k for k in load_file(str(out / "model.safetensors")))  # merged
    assert metrics["train_tokens_per_s"] > 0 and math.isfinite(metrics["final_loss"])
    key = "pairwise_accuracy" if metrics["kind"] == "orm" else "step_auc"
    assert 0 <= metrics[key] <= 1 and metrics[f"{key}_ci95_lo"] <= metrics[f"{key}_ci95_hi"]


def test_nothing_to_learn_is_an_input_error(tmp_path, tiny_dir):
    only_correct = _labels().filter(pa.array([o == 1 for o in _labels()["outcome"].to_pylist()]))
    with pytest.raises(InputError, match="no problem has both"):
        _train(tmp_path, tiny_dir, TrainRMConfig(optim=OPTIM), labels=only_correct)
    unlabelled = _labels().filter(pa.array([s == "eval" for s in _labels()["split"].to_pylist()]))
    with pytest.raises(InputError, match="no step labels"):
        _train(tmp_path, tiny_dir, TrainPRMConfig(optim=OPTIM), labels=unlabelled)


def test_response_mask_whole_and_cropped_to_a_window():
    # (prompt_len, seq_len): column t - 1 predicts token t, a response token when t >= prompt_len
    spans = [(3, 6), (2, 4)]
    whole = response_mask(spans, 5)
    assert whole.tolist() == [[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]
    # the RL update's window: from position start = min(prompt_len) - 1 on, the same columns
    window = response_mask(spans, 5 - 1, start=1)
    assert window.tolist() == whole[:, 1:].tolist()
    assert response_mask([(0, 3)], 2).tolist() == [[1, 1]]  # no prompt: every prediction
