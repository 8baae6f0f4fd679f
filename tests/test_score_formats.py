"""Reward-model format detection: each convention is told from what really marks it, and a
directory that is not a reward model (a base model from `rwpipe model`, a plain causal LM
whose vocabulary happens to hold "ки", a token classifier with the wrong label count) is
refused in one line naming it, by `rwpipe score`, `rwpipe eval` and `rwpipe rl` alike, before
any model loads.

python -m pytest tests/test_score_formats.py -q
"""

import json

import pyarrow as pa
import pytest
import torch

from rwpipe import artifacts
from rwpipe.errors import InputError
from rwpipe.model.tiny import _tiny_config, build_tiny_lm, build_tiny_tokenizer
from rwpipe.score import FORMATS, MS_TAG, QWEN_TAG, Scorer, detect_format
from tests.conftest import run_rwpipe

CPU = torch.device("cpu")


def _save(path, arch: str = "causal", tokens=(), num_labels: int = 2, architectures=None):
    """A tiny random Llama saved to `path`: causal LM or token classifier, with `tokens` added
    to the vocabulary and, if given, `architectures` written over the config's."""
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    tok = build_tiny_tokenizer()
    if tokens:
        tok.add_special_tokens({"additional_special_tokens": list(tokens)})
    config = _tiny_config(tok)
    torch.manual_seed(0)
    if arch == "causal":
        model = LlamaForCausalLM(config)
    else:
        config.num_labels = num_labels
        model = LlamaForTokenClassification(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    if architectures is not None:
        config_file = path / "config.json"
        config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {
            "architectures": architectures}))  # fmt: skip
    return path


def _materialize(source, out):
    """`rwpipe model` on a local source: a base model directory with its rwpipe-model.json."""
    from rwpipe.config import ModelConfig
    from rwpipe.model.materialize import materialize_model

    materialize_model(ModelConfig(source=str(source)), out)
    return out


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """The tiny causal LM as `rwpipe model` writes it."""
    root = tmp_path_factory.mktemp("base")
    return _materialize(build_tiny_lm(root / "tiny", seed=0), root / "model")


def test_rwpipe_is_read_from_the_cards_kind(tmp_path, base_model):
    from rwpipe.train.backbone import load_backbone, save_backbone

    for kind in ("orm", "prm", "implicit_prm"):
        bb = load_backbone(base_model, kind, device=CPU, dtype=torch.float32)
        save_backbone(bb, tmp_path / kind, {"metrics": {}})
        assert (
            detect_format(tmp_path / kind) == detect_format(tmp_path / kind, "rwpipe") == "rwpipe"
        )
        assert Scorer(tmp_path / kind, device=CPU).kind == kind
    # rwpipe model's card has the same name, and a kind that is no reward model's
    assert json.loads((base_model / "rwpipe-model.json").read_text())["kind"] == "local"
    with pytest.raises(InputError, match="written by `rwpipe model`"):
        detect_format(base_model)
    # a 1-label rwpipe PRM is not a TRL PRM, whatever the flag says
    with pytest.raises(InputError, match=r"/prm: not a trl_prm reward model.*1 label"):
        detect_format(tmp_path / "prm", "trl_prm")
    (tmp_path / "prm" / "rwpipe-model.json").unlink()  # a discriminative PRM without its card
    with pytest.raises(InputError, match=r"/prm: not a reward model rwpipe can read"):
        detect_format(tmp_path / "prm")


def test_math_shepherd_needs_its_tokens_and_a_prm_name(tmp_path):
    named = _save(tmp_path / "math-shepherd-mistral-7b-prm", tokens=[MS_TAG])
    assert detect_format(named) == "math_shepherd"
    hub = tmp_path / "models--org--my-prm" / "snapshots" / "0123abcd"
    assert detect_format(_save(hub, tokens=[MS_TAG])) == "math_shepherd"
    # "ки" is a token of every Mistral-family vocabulary: a base model with it is not a PRM
    base = _save(tmp_path / "mistral-7b-base", tokens=[MS_TAG])
    with pytest.raises(InputError, match=r"mistral-7b-base: not a reward model.*--format math_"):
        detect_format(base)
    assert detect_format(base, "math_shepherd") == "math_shepherd"  # the user says it is one
    assert Scorer(base, fmt="math_shepherd", device=CPU).format == "math_shepherd"
    # a PRM's name without the tag token is not enough, even when asked for
    untagged = _save(tmp_path / "shepherd-prm")
    with pytest.raises(InputError, match="cannot tell|not a reward model"):
        detect_format(untagged)
    with pytest.raises(InputError, match=r"shepherd-prm: not a math_shepherd reward model"):
        detect_format(untagged, "math_shepherd")


def test_a_materialised_model_is_named_by_its_source(tmp_path):
    tagged = _save(tmp_path / "src" / "math-shepherd-prm", tokens=[MS_TAG])
    assert detect_format(_materialize(tagged, tmp_path / "models" / "ms")) == "math_shepherd"
    plain = _save(tmp_path / "src" / "mistral", tokens=[MS_TAG])
    out = _materialize(plain, tmp_path / "models" / "prm")  # OUT_DIR's name says nothing
    with pytest.raises(InputError, match=r"models/prm: .*source '.*mistral'"):
        detect_format(out)


def test_qwen_prm_is_the_architecture_or_a_two_label_tagged_classifier(tmp_path):
    tagged = _save(tmp_path / "tagged", "token", tokens=[QWEN_TAG])
    assert detect_format(tagged) == "qwen_prm"
    # Qwen2.5-Math-PRM's own architecture; its head is remote code
    remote = _save(tmp_path / "qwen", "causal", tokens=[QWEN_TAG],
                   architectures=["Qwen2ForProcessRewardModel"])  # fmt: skip
    assert detect_format(remote) == "qwen_prm"
    with pytest.raises(InputError, match=r"qwen: .*not in the checkpoint.*--trust-remote-code"):
        Scorer(remote, device=CPU)  # not scored with a random head
    three = _save(tmp_path / "three", "token", tokens=[QWEN_TAG], num_labels=3)
    with pytest.raises(InputError, match="3 label"):
        detect_format(three)
    with pytest.raises(InputError, match=r"notag: not a qwen_prm reward model"):
        detect_format(_save(tmp_path / "notag", "token"), "qwen_prm")


def test_trl_prm_is_token_classification_with_two_labels(tmp_path):
    assert detect_format(_save(tmp_path / "two", "token")) == "trl_prm"
    with pytest.raises(InputError, match=r"one: not a reward model.*1 label"):
        detect_format(_save(tmp_path / "one", "token", num_labels=1))
    causal = _save(tmp_path / "causal")
    with pytest.raises(InputError, match=r"causal: not a trl_prm reward model.*ForCausalLM"):
        detect_format(causal, "trl_prm")


def test_a_base_model_is_refused_by_score_eval_and_rl(tmp_path, base_model):
    for fmt in ("auto", *FORMATS):
        with pytest.raises(InputError, match=str(base_model)):
            detect_format(base_model, fmt)
    rows = [{"problem_id": "p", "sample_idx": 0, "split": "eval", "question": "q",
             "prompt": "<p>", "completion": "a\n\nb", "token_ids": [1], "logprobs": [-0.5],
             "finish_reason": "stop", "num_tokens": 1, "steps": ["a\n\n", "b"], "pred": "4",
             "gold": "4", "verdict": "correct", "seed": 0}]  # fmt: skip
    rollouts = tmp_path / "rollouts.arrow"
    artifacts.write_artifact(pa.Table.from_pylist(rows), rollouts, "rollouts")
    out = tmp_path / "scores.arrow"
    for extra in ([], ["--format", "trl_prm"]):  # auto, and a format that does not match
        result = run_rwpipe("score", rollouts, base_model, out, *extra, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert str(base_model) in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()

    from rwpipe.config import BaseConfig, EvalConfig, RewardsConfig, RLConfig
    from rwpipe.eval import run as run_eval
    from rwpipe.rl import run as run_rl

    base = BaseConfig(seed=0, device="cpu")
    with pytest.raises(InputError, match="written by `rwpipe model`"):
        run_eval(EvalConfig(), base, rollouts=rollouts, out=tmp_path / "eval", prm=base_model)
    assert not (tmp_path / "eval").exists()
    from rwpipe.prepare.synthetic import generate_synthetic

    problems = tmp_path / "problems.arrow"
    artifacts.write_artifact(pa.Table.from_pylist(generate_synthetic(2, 0, ("add",), "train")),
                             problems, "problems", section="prepare", config={})  # fmt: skip
    with pytest.raises(InputError, match="written by `rwpipe model`"):
        run_rl(RLConfig(rewards=RewardsConfig(prm=1.0)), base, problems=problems,
               policy=base_model, out=tmp_path / "rl", prm=base_model)  # fmt: skip
    assert not (tmp_path / "rl").exists() and not (tmp_path / "rl.run").exists()
