"""The transformers engine: `model.generate()` in length-sorted, left-padded micro-batches.

Runs anywhere torch runs (CPU float32, CUDA bfloat16); the tests and the CPU smoke profile use
it. It follows the conventions of `rwpipe.backends` (raw logprobs, EOS kept in `token_ids`,
stop strings cut from `text`, per-prompt seeds). To make those hold, sampling is done by
rwpipe's own logits processors rather than transformers' `do_sample`:

1. `_RawLogprobRecorder` keeps log-softmax of the unmodified logits (then gathers the
   chosen token's entry one step later, so only one (B, V) tensor is alive at a time);
2. `_SuppressEos` masks EOS before `min_new_tokens`;
3. transformers' temperature and top-p warpers;
4. `_InverseCdfSampler` samples each row from the warped distribution with one uniform
   number from that row's own torch.Generator and turns the scores into a one-hot, so the
   greedy argmax of `generate(do_sample=False)` picks the sample; a row's randomness does
   not depend on the other rows of its batch.

Stopping (EOS, stop strings) and the progress count live in `_StopTracker`, which sees every
new token of every row and so knows exactly which rows were still generating.

Outputs do not depend on the batch composition except through float rounding: the padding
and the micro-batch a prompt lands in change the last bits of its logits, which can, rarely,
flip a sampled token.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from rwpipe.backends import (
    Completion,
    FinishReason,
    ProgressFn,
    SamplingParams,
    apply_chat_template,
    check_prompt_lengths,
    request_seed,
)
from rwpipe.runtime import pick_device, resolve_dtype


class _RawLogprobRecorder(LogitsProcessor):
    """Records log p(chosen token) under the raw logits; must run first in the chain."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None  # (B, V) log-softmax of the latest raw logits
        self.chosen: list[torch.Tensor] = []  # one (B,) tensor per generated position

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.last is not None:
            self._gather(input_ids[:, -1])
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _gather(self, tokens: torch.Tensor) -> None:
        assert self.last is not None
        self.chosen.append(self.last.gather(1, tokens[:, None]).squeeze(1))

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) logprobs, given the last generated token of each row, (B,)."""
        self._gather(last_tokens)
        self.last = None
        return torch.stack(self.chosen, dim=1).cpu()


class _SuppressEos(LogitsProcessor):
    """Masks the EOS tokens until `min_new_tokens` tokens exist."""

    def __init__(self, prompt_len: int, min_new_tokens: int, eos_ids: list[int]) -> None:
        self.end = prompt_len + min_new_tokens
        self.eos_ids = eos_ids

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] < self.end:
            scores[:, self.eos_ids] = -float("inf")
        return scores


class _InverseCdfSampler(LogitsProcessor):
    """Samples each row from softmax(scores) with its own generator; returns a one-hot score.

    Inverse-CDF sampling needs one uniform number per row and step (drawing Gumbel noise for
    the whole vocabulary costs ~1 ms per row per step on CPU). The returned scores are 0 at
    the sampled token and -inf elsewhere, so the greedy argmax that follows picks it.
    """

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.device = device

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        uniforms = torch.cat(
            [torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]
        )
        # float64 cumsum: float32 rounding over 49k entries would bias the tail tokens.
        cdf = torch.softmax(scores.double(), dim=-1).cumsum(dim=-1)
        targets = (uniforms.to(scores.device) * cdf[:, -1])[:, None]
        chosen = torch.searchsorted(cdf, targets, right=True).clamp_(max=scores.shape[1] - 1)
        one_hot = torch.full_like(scores, -float("inf"))
        return one_hot.scatter_(1, chosen, 0.0)


class _StopTracker(StoppingCriteria):
    """Finishes rows on EOS or a stop string, records where, and reports progress.

    It sees each row's newest token after every step, before padding starts, so `done`
    mirrors transformers' own `unfinished_sequences` and the token count is exact.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompt_len: int,
        params: SamplingParams,
        eos_ids: list[int],
        progress: ProgressFn | None,
    ) -> None:
        self.tokenizer, self.prompt_len, self.params = tokenizer, prompt_len, params
        self.eos_ids = torch.tensor(eos_ids)
        self.progress = progress
        self.done: torch.Tensor | None = None  # (B,) bool
        self.finish_len: dict[int, int] = {}  # row -> tokens kept (through the finishing one)
        self.stop_string_rows: set[int] = set()
        # Tokens to decode when looking for a stop string: each token has >= 1 character.
        self.window = max((len(s) for s in params.stop), default=0) + 1

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        active = ~self.done
        hit = active & torch.isin(input_ids[:, -1].cpu(), self.eos_ids)
        num_new = input_ids.shape[1] - self.prompt_len
        if self.params.stop and num_new > self.params.min_new_tokens:
            for row in torch.nonzero(active & ~hit).flatten().tolist():
                if self._stop_string_ends_here(input_ids[row, self.prompt_len :].tolist()):
                    hit[row] = True
                    self.stop_string_rows.add(row)
        self.finish_len.update((row, num_new) for row in torch.nonzero(hit).flatten().tolist())
        self.done |= hit
        count = int(active.sum())
        if self.progress is not None and count:
            self.progress(0, count)
        return self.done.to(input_ids.device)

    def _stop_string_ends_here(self, generated: list[int]) -> bool:
        """Whether a stop string ends in the text of the newest token (vLLM's rule)."""
        ids = generated[max(len(generated) - self.window, self.params.min_new_tokens) :]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        new_chars = len(text) - len(self.tokenizer.decode(ids[:-1], skip_special_tokens=True))
        if new_chars <= 0:
            return False
        start = len(text) - new_chars
        return any(text.find(s, max(0, start - len(s) + 1)) >= 0 for s in self.params.stop)


class HFGenerator:
    """Generator on transformers `generate()`.

    Args:
        model_dir: local transformers model directory.
        device: "auto", "cpu" or "cuda".
        dtype: "auto" (`rwpipe.runtime.default_dtype`: bfloat16 on CUDA and on CPUs with
            native bfloat16, float32 elsewhere) or a torch dtype name.
        seed: engine seed, mixed into every request seed.
        max_batch_sequences: rows (prompts × n) per `generate()` call; bounds memory.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        seed: int = 0,
        max_batch_sequences: int = 64,
    ) -> None:
        self.device = pick_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.dtype = str(torch_dtype).removeprefix("torch.")  # recorded in artifacts
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        self.model.to(self.device).eval()
        self.seed = seed
        self.max_batch_sequences = max_batch_sequences
        self.eos_ids = _eos_ids(self.model.generation_config, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The chat template applied to one user turn, generation prompt added, as text."""
        return apply_chat_template(self.tokenizer, question, system)

    @property
    def max_model_len(self) -> int:
        """Positions a prompt and its completion may take together."""
        return self.model.config.max_position_embeddings

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: ProgressFn | None = None,
        *,
        first_index: int = 0,
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order (see `rwpipe.backends`).

        Prompts are sorted by token length and cut into micro-batches of at most
        `max_batch_sequences` rows, so that padding stays small. `first_index`: the index of
        `prompts[0]` in the seeds (`request_seed`); an engine replica passes its chunk's start.
        """
        encoded = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        check_prompt_lengths(encoded, self.max_model_len)
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        per_batch = max(1, self.max_batch_sequences // params.n)
        results: dict[int, list[Completion]] = {}
        for start in range(0, len(order), per_batch):
            indices = order[start : start + per_batch]
            seed_indices = [first_index + i for i in indices]
            batch = self._generate_batch(
                [encoded[i] for i in indices], seed_indices, params, progress
            )
            results.update(zip(indices, batch, strict=True))
        return [results[i] for i in range(len(prompts))]

    @torch.inference_mode()
    def _generate_batch(
        self,
        encoded: list[list[int]],
        indices: list[int],
        params: SamplingParams,
        progress: ProgressFn | None,
    ) -> list[list[Completion]]:
        """One `generate()` over len(encoded) prompts × n rows; `indices`: their seed indices."""
        self.tokenizer.padding_side = "left"  # generation continues at the right edge
        batch = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].repeat_interleave(params.n, dim=0).to(self.device)
        mask = batch["attention_mask"].repeat_interleave(params.n, dim=0).to(self.device)
        prompt_len = input_ids.shape[1]
        seeds = [
            request_seed(self.seed, params.seed, i) + j for i in indices for j in range(params.n)
        ]
        recorder = _RawLogprobRecorder() if params.logprobs else None
        tracker = _StopTracker(self.tokenizer, prompt_len, params, self.eos_ids, progress)
        sequences = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            generation_config=self._generation_config(params),
            logits_processor=self._processors(params, prompt_len, seeds, recorder),
            stopping_criteria=StoppingCriteriaList([tracker]),
        )
        generated = sequences[:, prompt_len:].cpu()
        logprobs = recorder.finish(sequences[:, -1]) if recorder is not None else None
        rows = [
            self._completion(generated[r], logprobs, r, tracker, params)
            for r in range(len(generated))
        ]
        if progress is not None:
            progress(len(encoded), 0)
        return [rows[k : k + params.n] for k in range(0, len(rows), params.n)]

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        # Greedy decoding over our own processors; sampling happens in _InverseCdfSampler.
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )

    def _processors(
        self,
        params: SamplingParams,
        prompt_len: int,
        seeds: list[int],
        recorder: _RawLogprobRecorder | None,
    ) -> LogitsProcessorList:
        """The chain, in order: raw logprobs, EOS mask, temperature, top-p, noise."""
        chain: list[LogitsProcessor] = [recorder] if recorder is not None else []
        if params.min_new_tokens > 0:
            chain.append(_SuppressEos(prompt_len, params.min_new_tokens, self.eos_ids))
        if params.temperature > 0:
            chain.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                chain.append(TopPLogitsWarper(params.top_p))
            chain.append(_InverseCdfSampler(seeds, self.device))
        return LogitsProcessorList(chain)

    def _completion(
        self,
        generated: torch.Tensor,
        logprobs: torch.Tensor | None,
        row: int,
        tracker: _StopTracker,
        params: SamplingParams,
    ) -> Completion:
        """Row `row` of a batch: tokens through the finishing one, no padding, text cut at stop."""
        ids = generated.tolist()[: tracker.finish_len.get(row, generated.shape[0])]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if row in tracker.stop_string_rows:
            # Only text after min_new_tokens may stop; back off by the longest stop string.
            head = self.tokenizer.decode(ids[: params.min_new_tokens], skip_special_tokens=True)
            start = max(0, len(head) - tracker.window + 2) if params.min_new_tokens else 0
            text = _cut_at_stop(text, params.stop, start)
        lps = tuple(logprobs[row, : len(ids)].tolist()) if logprobs is not None else ()
        finish: FinishReason = "stop" if row in tracker.finish_len else "length"
        return Completion(text, tuple(ids), lps, finish)

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy new weights (same names and shapes as this model's) into the model."""
        self.model.load_state_dict(dict(state_dict), strict=True)

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.model = None  # type: ignore[assignment]


def _eos_ids(generation_config: GenerationConfig, tokenizer: Any) -> list[int]:
    """The EOS ids from generation_config.json plus the tokenizer's (as vLLM combines them)."""
    ids = generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _cut_at_stop(text: str, stop: Sequence[str], start: int) -> str:
    """`text` cut before the stop string that completes first at or after `start` (vLLM's rule)."""
    found = [(i + len(s), i) for s in stop if (i := text.find(s, start)) >= 0]
    return text[: min(found)[1]] if found else text
