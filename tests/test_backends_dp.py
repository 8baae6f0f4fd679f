"""Engine replicas (`engine.vllm.data_parallel_size`): `pytest tests/test_backends_dp.py`."""

import dataclasses
import multiprocessing

import pytest
import yaml

from rwpipe.backends import SamplingParams, is_vllm_available, load_engine, load_generator
from rwpipe.config import GenerationConfig, VLLMConfig, load_section
from rwpipe.errors import ConfigError, InputError

# ----------------------------------------------------------------------------------------------
# Light: no engine


def test_data_parallel_size_below_one_is_refused_by_params(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"engine": {"vllm": {"data_parallel_size": 0}}, "rollout": {}}))
    with pytest.raises(ConfigError, match=r"rollout\.engine\.vllm: data_parallel_size must be"):
        load_section(path, "rollout")


def test_replicas_are_refused_inside_a_multiprocess_gpu_launch() -> None:
    """rl under torchrun on GPUs passes vLLM's external launcher: one engine per rank."""
    engine = GenerationConfig(backend="vllm", vllm=VLLMConfig(data_parallel_size=2))
    extra = {"distributed_executor_backend": "external_launcher"}
    with pytest.raises(ConfigError, match=r"engine\.vllm\.data_parallel_size = 2"):
        load_engine("unused", engine, device="cuda", seed=0, extra=extra)


def test_chunks_are_contiguous_and_balanced() -> None:
    from rwpipe.backends.replicas import _chunks

    assert _chunks(5, 2) == [(0, 3), (3, 5)]
    assert _chunks(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert _chunks(0, 2) == [(0, 0), (0, 0)]


# ----------------------------------------------------------------------------------------------
# Two replicas of the tiny model in worker processes


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from rwpipe.model.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


def _prompts(generator) -> list[str]:
    # The same token count each (byte-level tokenizer, one-digit numbers): no padding anywhere.
    return [generator.chat_prompt(f"What is {i} + {i}?") for i in range(1, 6)]


def _damped(model_dir) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return {k: v * 0.5 for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_hf_replicas_equal_one_engine_and_take_new_weights(tiny_dir) -> None:
    """Five prompts over two replicas (chunks [0, 3) and [3, 5)) give the one-engine outputs:
    each prompt keeps its own seed. The single engine's micro-batches of 3 prompts
    (hf_batch_size 6, n 2) are the replicas' chunks, so the batch shapes agree; a replica
    computes on its share of the cores, and fewer threads round the logprobs differently."""
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=3)
    single = load_generator(str(tiny_dir), "hf", device="cpu", seed=7, max_batch_sequences=6)
    engine = GenerationConfig(backend="hf", hf_batch_size=6, vllm=VLLMConfig(data_parallel_size=2))
    before = set(multiprocessing.active_children())
    replicas = load_engine(tiny_dir, engine, device="cpu", seed=7)
    workers = set(multiprocessing.active_children()) - before
    try:
        assert len(workers) == 2  # before the fix: hf ignored data_parallel_size
        prompts = _prompts(replicas)
        assert prompts == _prompts(single)
        calls: list[tuple[int, int]] = []
        got = replicas.generate(prompts, params, progress=lambda p, t: calls.append((p, t)))
        _assert_same(got, single.generate(prompts, params))
        assert sum(p for p, _ in calls) == 5
        assert sum(t for _, t in calls) == sum(len(c.token_ids) for cs in got for c in cs)
        assert replicas.generate(prompts[3:], params)[0] != got[3]  # seeds follow the index

        damped = _damped(tiny_dir)
        replicas.update_weights(damped)
        single.update_weights(damped)
        updated = replicas.generate(prompts, params)
        _assert_same(updated, single.generate(prompts, params))
        assert updated[0] != got[0] and updated[4] != got[4]  # both replicas took the weights

        long = prompts[:4] + [replicas.chat_prompt("x" * 3000)]
        with pytest.raises(InputError, match=r"^prompt 4 has \d+ tokens"):
            replicas.generate(long, params)
        _assert_same(replicas.generate(prompts[:1], params), updated[:1])  # still usable
    finally:
        replicas.close()
        single.close()
    assert not any(w.is_alive() for w in workers)


@pytest.mark.slow
def test_vllm_replicas_equal_one_engine_and_take_new_weights(tiny_dir) -> None:
    """Two in-process vLLM CPU engines in worker processes against one engine. The check runs
    in a child process: closing an in-process vLLM engine tears down vLLM's global parallel
    state, which would break the session's shared engine (tests/conftest.py)."""
    if not is_vllm_available():
        pytest.skip("vllm is not installed")
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_vllm_check, args=(tiny_dir,))
    child.start()
    child.join(timeout=1200)
    if child.is_alive():
        child.kill()
        pytest.fail("the vLLM replica check did not finish in 20 minutes")
    assert child.exitcode == 0, "the vLLM replica check failed (its traceback is above)"


def _vllm_check(tiny_dir) -> None:
    """Batch shapes differ (3 + 2 prompts vs 5), so logprobs agree to rounding."""
    small = VLLMConfig(data_parallel_size=2, kv_cache_gib=1, max_model_len=512)
    engine = GenerationConfig(backend="vllm", vllm=small)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=3)
    replicas = load_engine(tiny_dir, engine, device="cpu", seed=7)
    one = dataclasses.replace(engine, vllm=dataclasses.replace(small, data_parallel_size=1))
    single = load_engine(tiny_dir, one, device="cpu", seed=7)
    try:
        prompts = _prompts(replicas)
        got, want = replicas.generate(prompts, params), single.generate(prompts, params)
        _assert_same(got, want)
        damped = _damped(tiny_dir)
        replicas.update_weights(damped)
        single.update_weights(damped)
        updated = replicas.generate(prompts, params)
        _assert_same(updated, single.generate(prompts, params))
        assert updated[0][0].logprobs != pytest.approx(got[0][0].logprobs, abs=1e-3)
        assert updated[4][0].logprobs != pytest.approx(got[4][0].logprobs, abs=1e-3)
    finally:
        replicas.close()
        single.close()


def _assert_same(got, want) -> None:
    """Same texts, tokens and finish reasons; logprobs equal up to float rounding."""
    assert [[(c.text, c.token_ids, c.finish_reason) for c in cs] for cs in got] == [
        [(c.text, c.token_ids, c.finish_reason) for c in cs] for cs in want
    ]
    for cs, ws in zip(got, want, strict=True):
        for c, w in zip(cs, ws, strict=True):
            assert c.logprobs == pytest.approx(w.logprobs, abs=1e-4)
