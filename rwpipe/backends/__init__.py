"""Text generation behind one interface: the `Generator` Protocol and its two engines.

Algorithms (rollout, Monte-Carlo step labels, judges, RL) take a `Generator` and never see which
engine runs it. `load_generator` is the one place that picks an engine; it imports
`rwpipe.backends.vllm` or `rwpipe.backends.hf` only in its own branch, so importing this module
pulls in neither torch nor vllm.

Conventions shared by both engines (tests/test_backends.py checks them):

- **Prompts are raw text** with the chat template already applied (`chat_prompt`). They are
  tokenised with `add_special_tokens=False`, so the template's own special tokens are the only
  ones and no second BOS appears. Continuing from a prefix is a longer prompt:
  `chat_prompt(q) + "step 1\\n\\nstep 2\\n\\n"`. The prefix is re-tokenised as a whole, so
  its tokens can differ from the ones that originally produced it where a boundary merges.
- **`token_ids`** are the generated tokens only: no prompt, no padding. They include the EOS
  token when the model emitted one, and the token that completed a stop string (whose `text` is
  cut just before the stop string, which is left out).
- **`logprobs[i]`** is the log-probability of `token_ids[i]` under the model's *raw*
  distribution: log-softmax of the logits at temperature 1, before temperature, top-p and
  min-token masking. This is vLLM's default `logprobs_mode="raw_logprobs"` and the quantity a
  policy-gradient or KL term needs from the policy. It is not the log-probability of the
  distribution that was actually sampled when temperature != 1 or top_p < 1.
- **`finish_reason`** is "stop" (EOS or a stop string) or "length" (`max_new_tokens` reached).
- **Seeds.** Prompt i of a call samples with its own random stream, seeded from
  `request_seed(engine_seed, params.seed, i)`; its sample j uses that seed + j. A prompt's
  samples therefore do not depend on the other prompts in the call, except through the
  floating-point rounding of batched matmuls (batch shape changes the last bits of the
  logits and can, rarely, flip a sampled token). The same prompts, params, seed and engine
  settings give the same outputs, call after call. The two engines draw different noise, so
  they agree on greedy outputs (temperature 0) but not on sampled ones.
- **Replicas.** `data_parallel_size > 1` runs that many copies of the engine in worker
  processes (`rwpipe.backends.replicas`); each generates a contiguous chunk of a call's
  prompts, passing the chunk's start as `first_index` so that every prompt keeps its seed, and
  the results are joined in prompt order. vLLM's own data parallelism is not used: its offline
  `LLM` refuses `data_parallel_size > 1`.
"""

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rwpipe.errors import ConfigError, InputError
from rwpipe.runtime import stable_seed

if TYPE_CHECKING:
    import torch

FinishReason = Literal["stop", "length"]
# progress(prompts_done_increment, tokens_increment); increments add up to the exact totals.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; the same meaning on every engine.

    Attributes:
        n: completions per prompt.
        temperature: softmax temperature; 0 means greedy (argmax).
        top_p: nucleus sampling mass; 1.0 keeps the whole distribution.
        max_new_tokens: generated tokens per completion at most.
        stop: strings that end a completion; the text is cut before the first one found.
        seed: the call's seed (combined with the engine seed and the prompt index).
        logprobs: return per-token logprobs (raw distribution, see the module docstring);
            when False, `Completion.logprobs` is empty.
        min_new_tokens: EOS and stop strings are ignored until this many tokens exist;
            setting it to `max_new_tokens` makes every completion exactly that long
            (benchmarks).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = True
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("need 0 <= min_new_tokens <= max_new_tokens")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")


@dataclass(frozen=True)
class Completion:
    """One generated continuation (see the module docstring for each field's convention)."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason


class Generator(Protocol):
    """What every algorithm needs from an engine."""

    dtype: str  # what it computes in ("float32", "bfloat16", ...), recorded in artifacts

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The model's chat template applied to one user turn, generation prompt added."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order.

        Pass every prompt of a job in one call: the engine batches and schedules them.
        """
        ...

    def close(self) -> None:
        """Free the engine (memory, worker processes)."""
        ...


class UpdatableGenerator(Generator, Protocol):
    """A Generator whose weights can be replaced in place (on-policy RL)."""

    def update_weights(self, state_dict: Mapping[str, "torch.Tensor"]) -> None:
        """Load new policy weights (transformers names and shapes) and drop cached KV."""
        ...


def request_seed(engine_seed: int, call_seed: int, prompt_index: int) -> int:
    """The seed of prompt `prompt_index`'s stream; its sample j uses this + j.

    Below 2**62 so that adding j (vLLM does this for n > 1) stays a valid 64-bit seed.
    """
    return stable_seed(engine_seed, call_seed, prompt_index) >> 1


def apply_chat_template(tokenizer: Any, question: str, system: str | None = None) -> str:
    """One user turn (after an optional system turn) through `tokenizer`'s chat template, as text
    with the generation prompt added: the prompt every backend sends for `question`."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def check_prompt_lengths(encoded: Sequence[Sequence[int]], limit: int) -> None:
    """Refuse, before any work, a prompt that leaves no room to generate in `limit` positions.

    Raises:
        InputError: naming the first such prompt and both lengths.
    """
    for i, ids in enumerate(encoded):
        if len(ids) >= limit:
            raise InputError(f"prompt {i} has {len(ids)} tokens; the model takes at most {limit}")


def is_vllm_available() -> bool:
    """Whether vLLM is installed. Does not import it, so a broken install fails loudly later."""
    return importlib.util.find_spec("vllm") is not None


def load_generator(
    model_dir: str,
    backend: Literal["auto", "vllm", "hf"],
    *,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    data_parallel_size: int = 1,
    **engine_kwargs: Any,
) -> Generator:
    """Load a causal LM from a local transformers directory into the chosen engine.

    Args:
        model_dir: a directory with config.json, weights and tokenizer files.
        backend: "vllm", "hf" (transformers), or "auto": vllm when installed, else hf.
        device: "auto", "cpu" or "cuda" (vLLM runs on the device its build targets and
            refuses a different one).
        dtype: "auto" (bfloat16 on CUDA and on CPUs with native bfloat16, float32 elsewhere:
            `rwpipe.runtime.default_dtype`) or a torch dtype name. The engine's `dtype`
            attribute names what it computes in.
        seed: the engine seed, mixed into every request's seed.
        data_parallel_size: engine copies; above 1, a `ReplicaGenerator` runs them in worker
            processes, each on its share of the CPU cores or GPUs (either engine).
        **engine_kwargs: passed to the engine; see `HFGenerator` and `VLLMGenerator`.

    Returns:
        A Generator (both engines and the replicas also implement `UpdatableGenerator`).
    """
    if backend == "auto":
        backend = "vllm" if is_vllm_available() else "hf"
    if backend not in ("vllm", "hf"):
        raise ValueError(f"unknown backend {backend!r}; expected auto, vllm or hf")
    if data_parallel_size < 1:
        raise ValueError(f"data_parallel_size must be >= 1, got {data_parallel_size}")
    if data_parallel_size > 1:
        from rwpipe.backends.replicas import ReplicaGenerator

        return ReplicaGenerator(model_dir, backend, data_parallel_size, device=device,
                                dtype=dtype, seed=seed, **engine_kwargs)  # fmt: skip
    match backend:
        case "vllm":
            from rwpipe.backends.vllm import VLLMGenerator

            return VLLMGenerator(model_dir, device=device, dtype=dtype, seed=seed, **engine_kwargs)
        case "hf":
            from rwpipe.backends.hf import HFGenerator

            return HFGenerator(model_dir, device=device, dtype=dtype, seed=seed, **engine_kwargs)
        case _:
            raise ValueError(f"unknown backend {backend!r}; expected auto, vllm or hf")


def load_engine(model_dir: str | Any, engine: Any, *, device: str, seed: int,
                extra: dict[str, Any] | None = None) -> Generator:  # fmt: skip
    """The one engine factory: the engine an `engine` params section (`GenerationConfig`)
    describes, for `model_dir`. Every stage that generates (rollout, annotate, judges, rl,
    search, critics) calls this; vLLM engine arguments in `extra` are added.

    `engine.vllm.data_parallel_size` engine replicas run for either backend (`load_generator`).

    Raises:
        ConfigError: replicas asked for inside a multi-process GPU launch (rl under torchrun /
            accelerate, `extra` selecting vLLM's external launcher), where every rank already
            holds its own engine on its own GPU.
    """
    v = engine.vllm
    dp = v.data_parallel_size
    if dp > 1 and (extra or {}).get("distributed_executor_backend") == "external_launcher":
        raise ConfigError(
            f"engine.vllm.data_parallel_size = {dp}: engine replicas cannot run inside a "
            "multi-process GPU launch, where each rank already has its own engine; set it to 1"
        )
    if engine.backend == "hf" or (engine.backend == "auto" and not is_vllm_available()):
        return load_generator(str(model_dir), "hf", device=device, seed=seed,
                              dtype=engine.dtype, data_parallel_size=dp,
                              max_batch_sequences=engine.hf_batch_size)  # fmt: skip
    kwargs = {
        "kv_cache_gib": v.kv_cache_gib,
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "enforce_eager": v.enforce_eager,
        "max_model_len": v.max_model_len,
        "compile_cache_dir": v.compile_cache_dir,
    } | (extra or {})
    return load_generator(str(model_dir), "vllm", device=device, seed=seed,
                          dtype=engine.dtype, data_parallel_size=dp, **kwargs)  # fmt: skip
