"""Generator backends on the real model (vLLM and transformers): `pytest tests/test_backends.py`."""

import dataclasses
import os
import subprocess
import sys

import pytest

from rwpipe.backends import (
    Completion,
    SamplingParams,
    load_generator,
    request_seed,
)
from rwpipe.errors import InputError

QUESTIONS = [
    "What is 37 + 48?",
    "What is 12 * 7?",
    "Tom has 5 apples and eats 2. How many are left?",
]
STOP = ("\n\n",)

# ----------------------------------------------------------------------------------------------
# Light: no torch


def test_sampling_params_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        SamplingParams(n=0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError):
        SamplingParams(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError):
        SamplingParams(stop=("",))


def test_request_seed_is_stable_and_leaves_room_for_n() -> None:
    seeds = {request_seed(0, 7, i) for i in range(100)}
    assert len(seeds) == 100 and max(seeds) < 2**62
    assert request_seed(0, 7, 3) == request_seed(0, 7, 3) != request_seed(1, 7, 3)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        load_generator("unused", "tgi")  # type: ignore[arg-type]


def test_importing_backends_pulls_in_no_engine() -> None:
    code = "import rwpipe.backends, sys; assert not {'torch', 'vllm'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# Slow: the real model on both engines


@pytest.fixture(params=["hf", "vllm"])
def generator(request: pytest.FixtureRequest):
    return request.getfixturevalue(f"{request.param}_generator")


def _prompts(generator) -> list[str]:
    return [generator.chat_prompt(q) for q in QUESTIONS]


def _ids(outputs: list[list[Completion]]) -> list[list[tuple[int, ...]]]:
    return [[c.token_ids for c in cs] for cs in outputs]


@pytest.mark.slow
def test_completions_follow_the_conventions(generator) -> None:
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=32, stop=STOP, seed=1)
    calls: list[tuple[int, int]] = []
    outputs = generator.generate(
        _prompts(generator), params, progress=lambda p, t: calls.append((p, t))
    )
    assert [len(cs) for cs in outputs] == [3, 3, 3]
    for c in (c for cs in outputs for c in cs):
        assert 0 < len(c.token_ids) == len(c.logprobs) <= 32
        assert all(lp <= 1e-6 for lp in c.logprobs)
        assert STOP[0] not in c.text
        if c.finish_reason == "length":
            assert len(c.token_ids) == 32
        else:
            assert c.finish_reason == "stop"
    tokens = sum(len(c.token_ids) for cs in outputs for c in cs)
    assert (sum(p for p, _ in calls), sum(t for _, t in calls)) == (3, tokens)
    assert len(calls) > 3, "progress should arrive during generation, not only per prompt"


@pytest.mark.slow
def test_engines_name_the_dtype_auto_chose(hf_generator_auto, vllm_generator) -> None:
    from rwpipe.backends.vllm import _engine_defaults
    from rwpipe.runtime import auto_dtype_name

    auto = auto_dtype_name(on_cpu=True)  # from the CPU flags, never assumed
    assert hf_generator_auto.dtype == auto
    assert _engine_defaults("auto", 0, on_cpu=True, kv_cache_gib=1.0)["dtype"] == auto
    assert vllm_generator.dtype == "float32"  # an explicit dtype is what the engine runs


@pytest.mark.slow
def test_auto_dtype_stays_close_to_float32(hf_generator_auto, hf_generator) -> None:
    """Where `auto` is bfloat16 (AVX-512 BF16 / AMX), the model it runs is the float32 model to
    within bfloat16's rounding: teacher-forced on float32's greedy answers, the two agree on
    the next token almost everywhere and their log-probabilities differ by a few hundredths
    (measured on an AMX CPU: mean 0.016-0.021 nats, max 0.10, argmax agreement >= 0.96).
    Where `auto` is float32 the two are one engine and agree exactly."""
    import torch

    prompts = _prompts(hf_generator)
    greedy = SamplingParams(temperature=0, max_new_tokens=48, stop=STOP)
    for out, prompt in zip(hf_generator.generate(prompts, greedy), prompts, strict=True):
        prompt_ids = hf_generator.tokenizer.encode(prompt, add_special_tokens=False)
        ids = torch.tensor([prompt_ids + list(out[0].token_ids)])
        start = len(prompt_ids) - 1
        with torch.inference_mode():
            ref, got = (
                torch.log_softmax(g.model(ids).logits[0, start:-1].float(), -1)
                for g in (hf_generator, hf_generator_auto)
            )
        target = ids[0, len(prompt_ids) :, None]
        diff = (ref.gather(1, target) - got.gather(1, target)).abs()
        agree = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
        assert diff.mean().item() < 0.05 and diff.max().item() < 0.3 and agree >= 0.9, (
            hf_generator_auto.dtype, diff.mean().item(), diff.max().item(), agree
        )  # fmt: skip


def test_eos_and_min_new_tokens(generator) -> None:
    prompt = generator.chat_prompt("Reply with just the number: what is 2 + 2?")
    short = generator.generate([prompt], SamplingParams(temperature=0, max_new_tokens=40))[0][0]
    assert short.finish_reason == "stop" and "<|im_end|>" not in short.text
    assert short.token_ids[-1] == generator.tokenizer.eos_token_id  # EOS is kept
    forced = SamplingParams(temperature=0.7, max_new_tokens=24, min_new_tokens=24, logprobs=False)
    long = generator.generate([prompt], forced)[0][0]
    assert (len(long.token_ids), long.finish_reason, long.logprobs) == (24, "length", ())


@pytest.mark.slow
def test_same_seed_same_output_and_batch_independent_tokens(generator) -> None:
    prompts = _prompts(generator)
    params = SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=24, seed=5)
    first = generator.generate(prompts, params)
    assert generator.generate(prompts, params) == first  # bit-identical, logprobs included
    other_seed = generator.generate(prompts, dataclasses.replace(params, seed=6))
    assert _ids(other_seed) != _ids(first)
    # Dropping the last prompt leaves the others' tokens alone (logprobs may move in the
    # last bits: batch shapes change float rounding).
    assert _ids(generator.generate(prompts[:2], params)) == _ids(first)[:2]


@pytest.mark.slow
def test_continuation_prompt_extends_the_prefix(generator) -> None:
    greedy = SamplingParams(temperature=0, max_new_tokens=30)
    prompt = generator.chat_prompt(QUESTIONS[0])
    full = generator.generate([prompt], greedy)[0][0]
    head = generator.tokenizer.decode(full.token_ids[:10], skip_special_tokens=True)
    encoded = generator.tokenizer.encode(prompt + head, add_special_tokens=False)
    assert encoded.count(generator.tokenizer.bos_token_id) == prompt.count("<|im_start|>")
    rest = generator.generate([prompt + head], SamplingParams(temperature=0, max_new_tokens=20))
    assert head + rest[0][0].text == full.text


@pytest.mark.slow
def test_logprobs_are_the_raw_model_distribution(generator, hf_generator) -> None:
    import torch

    prompt = generator.chat_prompt(QUESTIONS[1])
    params = SamplingParams(temperature=0.6, top_p=0.8, max_new_tokens=20, seed=2)
    c = generator.generate([prompt], params)[0][0]
    prompt_ids = generator.tokenizer.encode(prompt, add_special_tokens=False)
    ids = torch.tensor([prompt_ids + list(c.token_ids)])
    with torch.inference_mode():
        logits = hf_generator.model(ids).logits[0, len(prompt_ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1).gather(1, ids[0, len(prompt_ids) :, None])
    assert torch.allclose(torch.tensor(c.logprobs), expected.squeeze(1), atol=2e-3)


@pytest.mark.slow
def test_greedy_parity_across_backends(hf_generator, vllm_generator) -> None:
    greedy = SamplingParams(temperature=0, max_new_tokens=48, stop=STOP)
    hf = hf_generator.generate(_prompts(hf_generator), greedy)
    vllm = vllm_generator.generate(_prompts(vllm_generator), greedy)
    assert [c[0].text for c in hf] == [c[0].text for c in vllm]
    assert _ids(hf) == _ids(vllm)


@pytest.mark.slow
def test_update_weights_changes_and_restores_outputs(hf_generator, vllm_generator) -> None:
    import torch

    original = {k: v.clone() for k, v in hf_generator.model.state_dict().items()}
    damped = {k: v * 0.9 if ".mlp." in k else v for k, v in original.items()}
    prompts = _prompts(hf_generator)
    greedy = SamplingParams(temperature=0, max_new_tokens=16)
    before = vllm_generator.generate(prompts, greedy)
    try:
        for g in (hf_generator, vllm_generator):
            g.update_weights(damped)
        changed_hf, changed_vllm = (
            g.generate(prompts, greedy) for g in (hf_generator, vllm_generator)
        )
        assert _ids(changed_vllm) == _ids(changed_hf) != _ids(before)
    finally:
        for g in (hf_generator, vllm_generator):
            g.update_weights(original)
    assert vllm_generator.generate(prompts, greedy) == before
    torch.set_num_threads(1)  # vLLM's CPU worker disables this process-wide; rwpipe restores it
    assert torch.get_num_threads() == 1
    torch.set_num_threads(os.cpu_count() or 1)


@pytest.mark.slow
def test_overlong_prompt_is_refused_before_any_work(generator) -> None:
    ok = generator.chat_prompt(QUESTIONS[0])
    with pytest.raises(InputError, match="prompt 1 has"):
        generator.generate([ok, ok + " word" * 9000], SamplingParams(max_new_tokens=4))
    assert len(generator.generate([ok], SamplingParams(max_new_tokens=4))[0]) == 1
