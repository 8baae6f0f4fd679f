"""The scoring layer: each external PRM convention on a tiny random model built here with that
convention, against a by-hand reading of the logits; rwpipe's own models through the same API.
Scorers run in float32, as the references do: at `dtype: auto` a CPU with native bfloat16
computes in bfloat16, which moves scores in the fourth decimal and would blur what is checked
here (which position, which token, which order), not the numerics.

python -m pytest tests/test_score.py -q
"""

import pytest
import torch

from rwpipe.errors import InputError
from rwpipe.model.tiny import _tiny_config, build_tiny_tokenizer
from rwpipe.score import MS_BAD, MS_GOOD, MS_TAG, QWEN_TAG, Scorer, Solution, detect_format

SOLUTIONS = [
    Solution("What is 2+2?", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
             ["2+2 = 4.\n\n", "So \\boxed{4}"]),
    Solution("What is 3*3?", "<|im_start|>user\nWhat is 3*3?<|im_end|>\n<|im_start|>assistant\n",
             ["3*3 = 6.\n\n", "Check: 6.\n\n", "So \\boxed{6}"]),
]  # fmt: skip


def _save(path, arch: str, extra_tokens=()):
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    tok = build_tiny_tokenizer()
    if extra_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    config = _tiny_config(tok)
    torch.manual_seed(0)
    if arch == "causal":
        model = LlamaForCausalLM(config)
    else:
        config.num_labels = 2
        model = LlamaForTokenClassification(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model.eval(), tok


def _logits(model, tok, text):
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        return ids[0], model(input_ids=ids).logits[0]


def test_math_shepherd_convention(tmp_path):
    # auto-detection needs a name that marks a PRM: "ки" is in every Mistral vocabulary
    path, model, tok = _save(tmp_path / "math-shepherd-prm", "causal", [MS_TAG])
    scorer = Scorer(path, device=torch.device("cpu"), dtype=torch.float32)
    assert scorer.format == "math_shepherd" == detect_format(path)
    got = scorer.score(SOLUTIONS)
    for s, (outcome, steps) in zip(SOLUTIONS, got, strict=True):
        text = s.question + " " + "".join(x.rstrip() + f" {MS_TAG}\n" for x in s.steps)
        ids, logits = _logits(model, tok, text)
        tag = tok.convert_tokens_to_ids(MS_TAG)
        good, bad = (tok.encode(t, add_special_tokens=False)[-1] for t in (MS_GOOD, MS_BAD))
        want = logits[ids == tag][:, [good, bad]].softmax(-1)[:, 0]
        assert len(steps) == len(s.steps) and steps == pytest.approx(want.tolist(), abs=1e-5)
        assert outcome == steps[-1]


def test_qwen_prm_convention(tmp_path):
    path, model, tok = _save(tmp_path / "qwen", "token", [QWEN_TAG])
    scorer = Scorer(path, device=torch.device("cpu"), dtype=torch.float32)
    assert scorer.format == "qwen_prm"
    got = scorer.score(SOLUTIONS)
    for s, (_, steps) in zip(SOLUTIONS, got, strict=True):
        messages = [
            {"role": "system", "content": "Please reason step by step, and put your final answer "
             "within \\boxed{}."},
            {"role": "user", "content": s.question},
        ]  # fmt: skip
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids, logits = _logits(model, tok, prompt + "".join(x.strip() + QWEN_TAG for x in s.steps))
        want = logits[ids == tok.convert_tokens_to_ids(QWEN_TAG)].softmax(-1)[:, 1]
        assert steps == pytest.approx(want.tolist(), abs=1e-5)


def test_trl_prm_convention(tmp_path):
    path, model, tok = _save(tmp_path / "trl", "token")
    scorer = Scorer(path, device=torch.device("cpu"), dtype=torch.float32)
    assert scorer.format == "trl_prm"
    [(_, steps)] = scorer.score(SOLUTIONS[:1])
    s = SOLUTIONS[0]
    ids, logits = _logits(model, tok, s.question + "".join(x.strip() + "\n" for x in s.steps))
    newline = tok.encode("\n", add_special_tokens=False)[-1]
    want = logits[ids == newline].softmax(-1)[:, 1]
    assert steps == pytest.approx(want.tolist(), abs=1e-5)


def test_rwpipe_models_score_through_the_same_api(tmp_path):
    from rwpipe.model.tiny import build_tiny_lm
    from rwpipe.train.backbone import load_backbone, save_backbone

    base = build_tiny_lm(tmp_path / "lm")
    for kind in ("prm", "orm", "implicit_prm"):
        torch.manual_seed(0)
        bb = load_backbone(base, kind, device=torch.device("cpu"), dtype=torch.float32)
        save_backbone(bb, tmp_path / kind, {"metrics": {}})
        scorer = Scorer(tmp_path / kind, device=torch.device("cpu"), dtype=torch.float32)
        assert (scorer.format, scorer.kind) == ("rwpipe", kind)
        got = scorer.score(SOLUTIONS)
        want = bb.score([bb.encode(s.prompt, s.steps) for s in SOLUTIONS])
        for (o, st), (wo, wst), sol in zip(got, want, SOLUTIONS, strict=True):
            assert o == pytest.approx(wo, abs=1e-5) and st == pytest.approx(wst, abs=1e-5)
            assert len(st) == (0 if kind == "orm" else len(sol.steps))


def test_length_sorted_batches_keep_order_and_scores(tmp_path):
    # Scorer.score batches solutions by length; each keeps its own score, in input order,
    # and progress sees every solution and token once
    path, model, tok = _save(tmp_path / "trl", "token")
    scorer = Scorer(path, device=torch.device("cpu"), dtype=torch.float32)
    long = Solution("Q?", "", ["a much longer first step with many words in it\n\n"] * 6)
    mixed = [SOLUTIONS[1], long, SOLUTIONS[0], long, SOLUTIONS[0]]
    seen = []
    batched = scorer.score(mixed, 2, lambda n, t: seen.append((n, t)))
    alone = [scorer.score([s], 1)[0] for s in mixed]
    for (o, st), (wo, wst) in zip(batched, alone, strict=True):
        assert o == pytest.approx(wo, abs=1e-5) and st == pytest.approx(wst, abs=1e-5)
    assert [len(st) for _, st in batched] == [3, 6, 2, 6, 2]
    assert sum(n for n, _ in seen) == len(mixed)
    assert sum(t for _, t in seen) == sum(len(scorer._encode(s).input_ids) for s in mixed)


def test_unknown_format_is_an_input_error(tmp_path):
    path, _, _ = _save(tmp_path / "plain", "causal")
    with pytest.raises(InputError, match="plain: not a reward model rwpipe can read"):
        detect_format(path)
