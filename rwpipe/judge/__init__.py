"""LLM judges: outcome verdicts and step critiques from a local engine or an OpenAI-compatible
server, with k samples per judgement and a majority vote (generative-RM inference-time
scaling).

Two backends answer one user message with k samples:

- `LocalJudge`: any `Generator` (vLLM or transformers; the policy itself or another model
  directory), the message through that model's chat template.
- `OpenAIJudge`: any OpenAI-compatible chat-completions server (`vllm serve`, TGI, a hosted
  API) through the `openai` client, with bounded concurrency, retries with exponential
  backoff and a timeout per request. The API key is read from the environment variable whose
  *name* the params give; it never reaches an artifact, a log or dvc.lock. A server that stays
  unreachable after the retries raises `JudgeUnavailable` (one line), and the stage keeps the
  shards it already finished.

Prompts are package data (`rwpipe/judge/templates/`): `outcome.txt` (with or without the
reference answer), `critique.txt` (ProcessBench's critic prompt: paragraphs tagged and
indexed from 0, the first wrong one boxed, -1 for none) and `pairwise.txt` (two solutions of
one problem, A or B boxed; `judge_pairs` asks both orders to cancel position bias). Parsing
is strict (`rwpipe.judge.parse`): an unparseable sample is an abstention, and a judgement
whose samples all abstain (or tie) is stored as an abstention with the raw text.
"""

import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from rwpipe.backends import Generator, SamplingParams
from rwpipe.errors import InputError
from rwpipe.judge.parse import parse_choice, parse_first_error, parse_verdict
from rwpipe.runtime import stable_seed


class JudgeUnavailable(InputError):
    """The judge server could not be reached (after retries)."""


class JudgeBackend(Protocol):
    def complete(self, messages: Sequence[str], n: int, temperature: float, max_tokens: int,
                 seed: int) -> list[list[str]]:  # fmt: skip
        """`n` sampled replies to each user message, in order."""
        ...


def template(name: str) -> str:
    return resources.files("rwpipe.judge").joinpath("templates", f"{name}.txt").read_text()


def fill(text: str, **fields: str) -> str:
    """Replace `{field}` placeholders in one pass (LaTeX braces elsewhere stay as they are;
    a value containing a placeholder is not expanded again)."""
    return re.sub(r"\{(\w+)\}", lambda m: fields.get(m.group(1), m.group(0)), text)


def outcome_message(question: str, solution: str, reference: str | None = None) -> str:
    ref = f"\nReference answer: {reference}\n" if reference is not None else ""
    return fill(template("outcome"), question=question, solution=solution, reference=ref)


def critique_message(question: str, steps: Sequence[str]) -> str:
    tagged = "\n\n".join(
        f"<paragraph_{i}>\n{s.strip()}\n</paragraph_{i}>" for i, s in enumerate(steps)
    )
    return fill(template("critique"), question=question, tagged_steps=tagged)


def pairwise_message(question: str, first: str, second: str) -> str:
    return fill(template("pairwise"), question=question, first=first, second=second)


@dataclass
class Judgement:
    value: Any  # "correct" / "incorrect", a first-error index, or None (abstain)
    votes: int  # samples that agreed with the value
    parsed: int  # samples that parsed
    raw: str  # the first sample's text (kept for abstentions and audits)


def majority(values: Sequence[Any]) -> tuple[Any, int]:
    """The most common non-None value and its count; None on a tie or when all abstain."""
    counts = Counter(v for v in values if v is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None, counts[0][1] if counts else 0
    return counts[0]


def judge_outcomes(backend: JudgeBackend, items: Sequence[tuple[str, str, str | None]], *, k: int,
                   temperature: float, max_tokens: int, seed: int,
                   sentence: bool = False) -> list[Judgement]:  # fmt: skip
    """Verdicts for (question, solution, reference or None) items, k samples each; `sentence`
    also reads an unboxed verdict from the last line (`parse_verdict`)."""
    messages = [outcome_message(q, s, ref) for q, s, ref in items]
    replies = backend.complete(messages, k, temperature, max_tokens, seed)
    return [_vote(texts, lambda t: parse_verdict(t, sentence)) for texts in replies]


def judge_first_errors(backend: JudgeBackend, items: Sequence[tuple[str, Sequence[str]]], *,
                       k: int, temperature: float, max_tokens: int,
                       seed: int) -> list[Judgement]:  # fmt: skip
    """First wrong step (0-based, -1: none) for (question, steps) items, k samples each."""
    messages = [critique_message(q, steps) for q, steps in items]
    replies = backend.complete(messages, k, temperature, max_tokens, seed)
    out = []
    for texts, (_, steps) in zip(replies, items, strict=True):
        num_steps = len(steps)
        out.append(_vote(texts, lambda t, n=num_steps: parse_first_error(t, n)))
    return out


@dataclass
class PairJudgement:
    """One pair judged in both orders: x shown first, then y shown first."""

    preferred: str | None  # "x", "y", "tie" (the two orders disagree) or None (both abstain)
    forward: Judgement  # x as A, y as B: "A" means x
    swapped: Judgement  # y as A, x as B: "A" means y


def judge_pairs(backend: JudgeBackend, items: Sequence[tuple[str, str, str]], *, k: int,
                temperature: float, max_tokens: int, seed: int) -> list[PairJudgement]:  # fmt: skip
    """Which of two solutions is better, for (question, x, y) items, asked twice with the
    order swapped so that position bias cancels (k samples each way, majority per order).

    Both orders agreeing give their choice; disagreeing ones (the judge followed the position,
    not the content) give "tie"; one abstaining order leaves the other's choice; both
    abstaining give None.
    """
    messages = [m for q, x, y in items for m in (pairwise_message(q, x, y),
                                                 pairwise_message(q, y, x))]  # fmt: skip
    replies = backend.complete(messages, k, temperature, max_tokens, seed)
    out = []
    for i in range(len(items)):
        fwd, swp = _vote(replies[2 * i], parse_choice), _vote(replies[2 * i + 1], parse_choice)
        picks = [v for v in ({"A": "x", "B": "y"}.get(fwd.value),
                             {"A": "y", "B": "x"}.get(swp.value)) if v is not None]  # fmt: skip
        preferred = None if not picks else picks[0] if len(set(picks)) == 1 else "tie"
        out.append(PairJudgement(preferred, fwd, swp))
    return out


def _vote(texts: Sequence[str], parse) -> Judgement:
    values = [parse(t) for t in texts]
    value, votes = majority(values)
    return Judgement(value, votes, sum(v is not None for v in values), texts[0] if texts else "")


class LocalJudge:
    """A judge on a local engine (see the module docstring)."""

    def __init__(self, generator: Generator, system: str | None = None) -> None:
        self.generator, self.system = generator, system

    def complete(self, messages, n, temperature, max_tokens, seed) -> list[list[str]]:
        prompts = [self.generator.chat_prompt(m, self.system) for m in messages]
        params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_tokens,
                                seed=seed, logprobs=False)  # fmt: skip
        return [[c.text for c in cs] for cs in self.generator.generate(prompts, params)]


class OpenAIJudge:
    """A judge behind an OpenAI-compatible server (see the module docstring).

    Args:
        base_url: e.g. http://127.0.0.1:8000/v1.
        model: the served model name.
        api_key_env: the environment variable holding the key ("" or unset: no key).
        concurrency: requests in flight at most.
        retries: extra attempts per request on connection errors, timeouts, 429 and 5xx.
        timeout_s: per request.
        backoff_s: the first retry's wait; doubled each time.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "", concurrency: int = 4,
                 retries: int = 3, timeout_s: float = 120.0,
                 backoff_s: float = 1.0) -> None:  # fmt: skip
        import openai

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.client = openai.OpenAI(base_url=base_url, api_key=key or "EMPTY",
                                    timeout=timeout_s, max_retries=0)  # fmt: skip
        self.base_url, self.model = base_url, model
        self.concurrency, self.retries, self.backoff_s = concurrency, retries, backoff_s

    @classmethod
    def from_config(cls, j: Any) -> "OpenAIJudge":
        """The server a `JudgeConfig` (annotate.judge, eval.critic) names."""
        return cls(j.base_url, j.model, api_key_env=j.api_key_env, concurrency=j.concurrency,
                   retries=j.retries, timeout_s=j.timeout_s)  # fmt: skip

    def _one(self, message: str, n: int, temperature: float, max_tokens: int, seed: int):
        import openai

        retryable = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                     openai.InternalServerError)  # fmt: skip
        for attempt in range(self.retries + 1):
            try:
                reply = self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": message}], n=n,
                    temperature=temperature, max_tokens=max_tokens,
                    # a seed only matters when sampling (and costs vLLM-CPU its batching)
                    seed=seed if temperature > 0 else None,
                )  # fmt: skip
                return [c.message.content or "" for c in reply.choices]
            except retryable as exc:
                if attempt == self.retries:
                    raise JudgeUnavailable(
                        f"{self.base_url}: judge server failed after {attempt + 1} attempts "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                    ) from None
                time.sleep(self.backoff_s * 2**attempt)
            except openai.APIStatusError as exc:  # 4xx other than 429: not worth retrying
                raise JudgeUnavailable(
                    f"{self.base_url}: judge request refused ({exc.status_code}: "
                    f"{' '.join(str(exc).split())[:120]})"
                ) from None
        raise AssertionError("unreachable")

    def complete(self, messages, n, temperature, max_tokens, seed) -> list[list[str]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [
                pool.submit(self._one, m, n, temperature, max_tokens, stable_seed(seed, i) >> 33)
                for i, m in enumerate(messages)
            ]
            return [f.result() for f in futures]
