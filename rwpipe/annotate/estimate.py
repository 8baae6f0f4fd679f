"""Monte-Carlo value of a solution prefix: the fraction of completions that reach the gold answer.

Both step-label methods (Math-Shepherd `mc` and `omegaprm`) ask the same question of many
prefixes: "continued k times by the completer, how often does this prefix end at the gold
answer?" `MCEstimator` answers a whole batch of such questions with one `generate` call (so
the engine batches every prefix and, on vLLM, shares their common KV blocks through prefix
caching), checks the completions with the verifier pool, and caches each answer by
(problem, prefix text): a prefix shared by two rollouts of one problem, or asked again later
in a search, is never sampled twice.

Cost is charged to the rollout that first asked for a prefix; a cache hit is free.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rwpipe.backends import Generator, SamplingParams
from rwpipe.runtime import stable_seed
from rwpipe.verify import VerifierPool


@dataclass(frozen=True)
class Query:
    """One prefix to estimate.

    Attributes:
        problem_id: the problem (cache scope: prefixes of different problems never match).
        prompt: the rollout's prompt exactly as it was sent (chat template applied).
        prefix: the solution text so far (whole steps, separators included).
        gold: the gold final answer.
        owner: the rollout charged for the completions if this prefix is new.
    """

    problem_id: str
    prompt: str
    prefix: str
    gold: str
    owner: int


@dataclass
class Estimate:
    """What is known of one prefix: completions drawn, how many reached the gold answer."""

    n: int = 0
    correct: int = 0
    tokens: int = 0

    @property
    def value(self) -> float:
        """MC(s): the fraction of completions that reached the gold answer."""
        return self.correct / self.n if self.n else float("nan")


@dataclass
class Cost:
    """Completions and generated tokens spent on one rollout's labels."""

    completions: int = 0
    tokens: int = 0


class MCEstimator:
    """Batched, cached Monte-Carlo prefix values through any Generator.

    Args:
        generator: the completer (any backend).
        verifier: checks each completion (prefix + continuation) against the gold answer.
        temperature, top_p, max_new_tokens: how completions are sampled.
        seed: base seed; call c of this estimator samples with `stable_seed(seed, c)`, so a
            shard labelled again after a kill draws the same completions.
        progress: called with (items, tokens) after each generate call's tokens.
    """

    def __init__(
        self,
        generator: Generator,
        verifier: VerifierPool,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.generator, self.verifier = generator, verifier
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.seed = seed
        self.progress = progress
        self.cache: dict[tuple[str, str], Estimate] = {}
        self.costs: dict[int, Cost] = {}
        self.calls = 0

    def known(self, problem_id: str, prefix: str) -> Estimate | None:
        return self.cache.get((problem_id, prefix))

    def estimate(self, queries: Sequence[Query], k: int) -> list[Estimate]:
        """Bring every prefix in `queries` to at least k completions, then return the estimates.

        A prefix already in the cache is topped up (k - n more completions), not resampled.
        New completions for all prefixes that need the same number go out in one call.

        Returns:
            The (cumulative) estimate of each query, in order.
        """
        need: dict[int, dict[tuple[str, str], Query]] = {}
        for q in queries:
            key = (q.problem_id, q.prefix)
            have = self.cache[key].n if key in self.cache else 0
            if have < k and not any(key in group for group in need.values()):
                need.setdefault(k - have, {})[key] = q
        for count, group in sorted(need.items()):
            self._sample(list(group.values()), count)
        return [self.cache[(q.problem_id, q.prefix)] for q in queries]

    def _sample(self, queries: list[Query], k: int) -> None:
        params = SamplingParams(
            n=k,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=stable_seed(self.seed, self.calls),
            logprobs=False,
        )
        self.calls += 1
        outputs = self.generator.generate(
            [q.prompt + q.prefix for q in queries],
            params,
            progress=(lambda _p, t: self.progress(0, t)) if self.progress else None,
        )
        golds = [q.gold for q in queries for _ in range(k)]
        texts = [q.prefix + c.text for q, cs in zip(queries, outputs, strict=True) for c in cs]
        verdicts = iter(self.verifier.check(golds, texts))
        for q, completions in zip(queries, outputs, strict=True):
            tokens = sum(len(c.token_ids) for c in completions)
            correct = sum(next(verdicts).verdict == "correct" for _ in completions)
            est = self.cache.setdefault((q.problem_id, q.prefix), Estimate())
            est.n, est.correct, est.tokens = est.n + k, est.correct + correct, est.tokens + tokens
            cost = self.costs.setdefault(q.owner, Cost())
            cost.completions += k
            cost.tokens += tokens
