"""PRM-guided step-level search (test-time compute): beam search, diverse verifier tree search
and particle filtering, through the Generator interface.

The search-and-learn recipe (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally"; the
Hugging Face search-and-learn beam search): keep `beam_width` partial solutions per problem;
at each depth, sample `expansions` next steps for every live beam (one step = generation up to
the step separator), score every candidate's steps with the PRM, aggregate them (`last` by
default, as search-and-learn does), and keep the best `beam_width`. A candidate that emits
EOS (or exhausts `max_steps` / `max_new_tokens`) is finished and keeps its place in the ranking
until better ones push it out; the search ends when no beam is live. The answer is the
highest-scoring finished solution.

Every problem's beams go out in one `generate` call per depth (the engine batches them and its
prefix cache shares the prompt and earlier steps). Generated tokens are counted, so the search
can be compared with best-of-N at matched tokens.

Departure: a step is the pipeline's step (`rwpipe.steps.StepRule`, from `base.step_split`),
the rule the PRM was trained with, not a fixed "\\n\\n". Generation stops at the rule's stop
string (a blank line by default); a `regex` rule whose pattern is not a literal has none, so
the engine generates up to `step_max_tokens` and `StepRule.first_step` keeps only the first
step. The discarded rest still counts as generated tokens, in the matched-token comparison
and against `max_new_tokens`.
"""

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rwpipe.backends import Completion, Generator, SamplingParams
from rwpipe.config import SearchConfig
from rwpipe.eval.metrics import ScoreKind, aggregate, score_kind, undefined
from rwpipe.runtime import stable_seed
from rwpipe.steps import StepRule


@dataclass
class Beam:
    steps: list[str] = field(default_factory=list)
    score: float = float("-inf")
    finished: bool = False
    tokens: int = 0  # generated tokens along this beam's path


ScoreFn = Callable[[Sequence[str], Sequence[str], Sequence[Sequence[str]]], list[list[float]]]


def beam_search(
    generator: Generator,
    score: ScoreFn,
    questions: Sequence[str],
    prompts: Sequence[str],
    cfg: SearchConfig,
    *,
    seed: int = 0,
    rule: StepRule | None = None,
    eos_token_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    kind: ScoreKind = "probability",
) -> list[dict[str, Any]]:
    """Search every problem with `cfg.method`; one record per problem: the chosen solution
    text, its score, the tokens the search generated for that problem (and, for particle
    filtering, the effective sample size after each resampling).

    Methods (all through one `generate` call per depth for every problem's live paths):

    - `beam`: keep the `beam_width` best of all candidates (finished ones included).
    - `dvts` (diverse verifier tree search, search-and-learn): `beam_width` independent
      subtrees, each keeping only its own best candidate per depth (greedy under the PRM), so
      that one high-scoring prefix cannot take the whole budget; the answer is the best
      finished subtree.
    - `particles` (particle filtering, Puri et al. 2025): `beam_width` particles, each
      extended by one step per depth, then all resampled with replacement with probabilities
      softmax(w / `resample_temperature`), w the aggregated score's log-odds (a probability)
      or the score itself (a log-ratio); finished particles are carried along and can be
      resampled. The answer is the highest-scoring finished particle.

    Args:
        generator: any engine.
        score: (questions, prompts, step lists) -> step scores per solution (a PRM).
        questions, prompts: the problems and their chat prompts.
        cfg: search knobs.
        seed: sampling seed (per depth, derived from it; resampling per problem and depth).
        rule: what a step is (default: a blank line ends one).
        eos_token_id: the end-of-solution token; by default the generator tokenizer's.
        progress: called with (problems finished, tokens) as the search goes.
        kind: the PRM's score kind; `cfg.aggregation` must be defined for it (a ValueError
            otherwise, `rwpipe.eval.metrics.undefined`).
    """
    [out] = search_together(generator, score, questions, prompts, [cfg], seed=seed, rule=rule,
                            eos_token_id=eos_token_id, progress=progress, kind=kind)  # fmt: skip
    return out


def search_together(
    generator: Generator,
    score: ScoreFn,
    questions: Sequence[str],
    prompts: Sequence[str],
    cfgs: Sequence[SearchConfig],
    *,
    seed: int = 0,
    resample_seeds: Sequence[int] | None = None,
    rule: StepRule | None = None,
    eos_token_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    kind: ScoreKind = "probability",
) -> list[list[dict[str, Any]]]:
    """Several searches of the same problems in lockstep (`beam_search` per config, e.g. every
    method at every budget): at each depth the live paths of all of them go to the engine in
    one `generate` call per distinct sampling setting (particles sample one child, the trees
    `expansions`) and to the PRM in one batch, so that the engine decodes large batches and
    its prefix cache shares every prompt across the searches. Each search keeps its own paths
    and counts its own tokens, exactly as alone; only which sample each request draws differs
    (request seeds follow the position in the call).

    Args:
        cfgs: one config per search.
        seed: the sampling seed (per depth, derived from it).
        resample_seeds: particle filtering's resampling seed per search (default: `seed`).
        progress: called with (problems whose searches have all finished, tokens).
        Others as `beam_search`.

    Returns:
        Per config, `beam_search`'s records.
    """
    rule = rule if rule is not None else StepRule()
    for cfg in cfgs:
        if (reason := undefined(cfg.aggregation, kind)) is not None:
            raise ValueError(f"aggregation {cfg.aggregation}: {reason}")
    if eos_token_id is None:
        eos_token_id = generator.tokenizer.eos_token_id  # type: ignore[attr-defined]
    seeds = list(resample_seeds) if resample_seeds is not None else [seed] * len(cfgs)
    runs = [_Run(cfg, len(questions), s) for cfg, s in zip(cfgs, seeds, strict=True)]
    step = _Step(generator, score, questions, prompts, seed=seed, kind=kind, rule=rule,
                 eos_token_id=eos_token_id)  # fmt: skip
    open_problems = set(range(len(questions)))
    depth = 0
    while live := [(r, p, i) for r, run in enumerate(runs) for p, i in run.live()]:
        children = step.expand(runs, live, depth)
        for r, run in enumerate(runs):
            mine = [(p, i, kids) for (q, p, i), kids in zip(live, children, strict=True)
                    if q == r]  # fmt: skip
            run.advance(mine, depth, kind)
        done = {p for p in open_problems if all(run.finished(p) for run in runs)}
        open_problems -= done
        if progress is not None and done:
            progress(len(done), 0)
        depth += 1
    return [run.results() for run in runs]


class _Run:
    """One search (one config) over the problems: its paths, what it spent, its ESS."""

    def __init__(self, cfg: SearchConfig, problems: int, resample_seed: int) -> None:
        self.cfg, self.seed = cfg, resample_seed
        width = cfg.beam_width
        # paths[p]: beam -> its beams; dvts -> one path per subtree; particles -> the particles
        self.paths = [[Beam()] if cfg.method == "beam" else [Beam() for _ in range(width)]
                      for _ in range(problems)]  # fmt: skip
        self.spent = [0] * problems  # generated tokens per problem
        self.ess: list[list[float]] = [[] for _ in range(problems)]

    @property
    def fan(self) -> int:
        """Children sampled per live path at each depth."""
        return 1 if self.cfg.method == "particles" else self.cfg.expansions

    def live(self) -> list[tuple[int, int]]:
        return [(p, i) for p, group in enumerate(self.paths) for i, b in enumerate(group)
                if not b.finished]  # fmt: skip

    def finished(self, p: int) -> bool:
        return all(b.finished for b in self.paths[p])

    def advance(self, mine: list[tuple[int, int, list[Beam]]], depth: int, kind: ScoreKind) -> None:
        """Keep, per problem, what the method keeps of its scored children."""
        cfg, width = self.cfg, self.cfg.beam_width
        for p in dict.fromkeys(p for p, _, _ in mine):
            kids_of = [(i, kids) for q, i, kids in mine if q == p]
            if cfg.method == "beam":
                pool = [b for b in self.paths[p] if b.finished] + [
                    c for _, kids in kids_of for c in kids]  # fmt: skip
                self.paths[p] = sorted(pool, key=lambda b: b.score, reverse=True)[:width]
            elif cfg.method == "dvts":
                for i, kids in kids_of:
                    self.paths[p][i] = max(kids, key=lambda b: b.score)
            else:
                for i, kids in kids_of:
                    self.paths[p][i] = kids[0]
                self.paths[p], got = self._resample(self.paths[p], p, depth, kind)
                self.ess[p].append(got)

    def _resample(self, particles: list[Beam], p: int, depth: int,
                  kind: ScoreKind) -> tuple[list[Beam], float]:  # fmt: skip
        """Particles drawn with replacement by `resample_weights`; and the effective sample size
        of those weights, 1 / sum(w^2) (N when uniform, 1 when one particle has all)."""
        weights = resample_weights([b.score for b in particles], kind,
                                   self.cfg.resample_temperature)  # fmt: skip
        rng = random.Random(stable_seed(self.seed, "particles", p, depth))
        picked = rng.choices(range(len(particles)), weights=weights, k=len(particles))
        drawn = [Beam(list(particles[i].steps), particles[i].score, particles[i].finished,
                      particles[i].tokens) for i in picked]  # fmt: skip
        return drawn, 1.0 / math.fsum(w * w for w in weights)

    def results(self) -> list[dict[str, Any]]:
        out = []
        for p, group in enumerate(self.paths):
            best = max(group, key=lambda b: b.score)
            record = {"text": "".join(best.steps), "steps": best.steps, "score": best.score,
                      "tokens": self.spent[p]}  # fmt: skip
            out.append(record | ({"ess": self.ess[p]} if self.cfg.method == "particles" else {}))
        return out


class _Step:
    """One depth of every search: the engine calls, token counts and scoring."""

    def __init__(self, generator: Generator, score: ScoreFn, questions: Sequence[str],
                 prompts: Sequence[str], *, seed: int, kind: ScoreKind, rule: StepRule,
                 eos_token_id: int | None) -> None:  # fmt: skip
        self.generator, self.score_fn = generator, score
        self.questions, self.prompts, self.seed, self.kind, self.rule = (
            questions, prompts, seed, kind, rule)  # fmt: skip
        self.eos = eos_token_id

    def expand(self, runs: Sequence[_Run], live: Sequence[tuple[int, int, int]],
               depth: int) -> list[list[Beam]]:  # fmt: skip
        """The scored children of every live (search, problem, path), in order: one engine
        call per distinct sampling setting, one PRM batch."""
        calls: dict[tuple[int, float, int], list[int]] = {}
        for k, (r, _, _) in enumerate(live):
            cfg = runs[r].cfg
            calls.setdefault((runs[r].fan, cfg.temperature, cfg.step_max_tokens), []).append(k)
        children: list[list[Beam]] = [[] for _ in live]
        for (n, temperature, step_max_tokens), members in calls.items():
            params = SamplingParams(
                n=n, temperature=temperature, max_new_tokens=step_max_tokens,
                stop=self.rule.stop, seed=stable_seed(self.seed, "search", depth),
                logprobs=False,
            )  # fmt: skip
            parents = [(live[k][0], live[k][1], runs[live[k][0]].paths[live[k][1]][live[k][2]])
                       for k in members]  # fmt: skip
            outputs = self.generator.generate(
                [self.prompts[p] + "".join(b.steps) for _, p, b in parents], params
            )
            for k, (r, p, parent), completions in zip(members, parents, outputs, strict=True):
                runs[r].spent[p] += sum(len(c.token_ids) for c in completions)
                children[k] = [_child(parent, c, self.rule, self.eos, runs[r].cfg)
                               for c in completions]  # fmt: skip
        flat = [(r, p, b) for (r, p, _), kids in zip(live, children, strict=True) for b in kids]
        got = self.score_fn(
            [self.questions[p] for _, p, _ in flat],
            [self.prompts[p] for _, p, _ in flat],
            [b.steps for _, _, b in flat],
        )
        for (r, _, b), steps in zip(flat, got, strict=True):
            value = aggregate(steps, runs[r].cfg.aggregation, self.kind)
            b.score = value if value == value else float("-inf")  # unscored: ranks last
        return children


def resample_weights(scores: Sequence[float], kind: ScoreKind, temperature: float) -> list[float]:
    """Resampling probabilities: softmax over the particles of w / temperature, w the log-odds
    of a probability score (clamped to [1e-6, 1 - 1e-6]) or a log-ratio score itself. An
    unscored particle (-inf) gets 0 unless all are unscored (then uniform)."""

    def logit(s: float) -> float:
        if s == float("-inf"):
            return s
        if kind == "log_ratio":
            return s
        s = min(max(s, 1e-6), 1 - 1e-6)
        return math.log(s / (1 - s))

    w = [logit(s) / temperature for s in scores]
    top = max(w)
    if top == float("-inf"):
        return [1.0 / len(w)] * len(w)
    e = [math.exp(x - top) for x in w]
    total = math.fsum(e)
    return [x / total for x in e]


def _child(
    parent: Beam, c: Completion, rule: StepRule, eos_token_id: int | None, cfg: SearchConfig
) -> Beam:
    """`parent` extended by the first step of its continuation `c`; finished when the solution
    ended (EOS within the kept step), the step is empty, or a budget is spent."""
    eos = bool(c.token_ids) and c.token_ids[-1] == eos_token_id
    stopped = c.finish_reason == "stop" and not eos and bool(rule.stop)
    step, complete = rule.first_step(c.text, stopped_at_separator=stopped)
    ended = eos and not complete  # cut after its first step: the EOS went with the rest
    tokens = parent.tokens + len(c.token_ids)  # a discarded rest was generated all the same
    steps = parent.steps + ([step] if step else [])
    done = ended or not step or len(steps) >= cfg.max_steps or tokens >= cfg.max_new_tokens
    return Beam(steps, finished=done, tokens=tokens)


def describe(cfg: SearchConfig) -> str:
    """The search's settings in a few words, for the report."""
    if cfg.method == "particles":
        return (f"particle filtering, {cfg.beam_width} particles, resampling temperature "
                f"{cfg.resample_temperature}, agg {cfg.aggregation}")  # fmt: skip
    what = "DVTS" if cfg.method == "dvts" else "beam"
    return f"{what} {cfg.beam_width} x {cfg.expansions}, agg {cfg.aggregation}"


def evaluate_search(
    rows: Sequence[Mapping[str, Any]],
    generator: Generator,
    scorer: Any,
    prm_scores: Mapping[tuple[str, int], tuple[float | None, Sequence[float]]],
    cfg: SearchConfig,
    *,
    seed: int,
    rule: StepRule,
    draws: int = 50,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Beam search on the first `cfg.problems` eval problems, against PRM best-of-N on the
    same problems at the N whose generated tokens come closest to the search's.

    Args:
        rows: the eval split's rollouts (the best-of-N pool).
        generator: the policy's engine.
        scorer: the PRM (`rwpipe.score.Scorer`).
        prm_scores: the PRM's scores of `rows`, by (problem_id, sample_idx).
        cfg: the eval.search section.
        seed: the sampling seed.
        rule: what a step is (`base.step_split`).
        draws, batch_size: best-of-N subsets per problem, and the PRM's batch size.
    """
    from rwpipe.eval.curves import _groups, selection_curves
    from rwpipe.progress import progress_bar
    from rwpipe.score import Solution
    from rwpipe.verify import verify_many

    kind = score_kind(getattr(scorer, "kind", "prm"))
    groups = _groups(rows)
    pids = list(groups)[: cfg.problems]
    firsts = [groups[p][0] for p in pids]

    def score(questions, prompts, step_lists):
        sols = [Solution(q, p, s) for q, p, s in zip(questions, prompts, step_lists, strict=True)]
        return [steps for _, steps in scorer.score(sols, batch_size)]

    with progress_bar(len(pids), "search", "problems") as advance:
        results = beam_search(
            generator, score, [r["question"] for r in firsts], [r["prompt"] for r in firsts],
            cfg, seed=seed, rule=rule, progress=advance, kind=kind,
        )  # fmt: skip
    verdicts = verify_many([r["gold"] for r in firsts], [r["text"] for r in results])
    hits = [v.verdict == "correct" for v in verdicts]
    n = len(hits)
    acc = sum(hits) / n
    se = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else float("nan")
    tokens = sum(r["tokens"] for r in results) / n
    sub = [r for p in pids for r in groups[p]]
    per_sample = sum(r["num_tokens"] for r in sub) / len(sub)
    top = min(len(groups[p]) for p in pids)
    matched = min(range(1, top + 1), key=lambda k: abs(k * per_sample - tokens))
    curves = selection_curves(
        sub, [matched], {"prm": prm_scores}, (cfg.aggregation,), draws, seed, {"prm": kind}
    )
    bon = next(c for c in curves if c["rule"] == f"prm_{cfg.aggregation}")
    return {
        "problems": n,
        "accuracy": acc,
        "stderr": se,
        "tokens_per_problem": tokens,
        "bon_n": matched,
        "bon_tokens_per_problem": matched * per_sample,
        "bon_accuracy": bon["accuracy"],
        "bon_stderr": bon["stderr"],
        "bon_budget_short": tokens > top * per_sample,  # the pool has fewer tokens than search
        "config": describe(cfg),
    } | ({"ess_mean": float(np.mean([e for r in results for e in r["ess"]]))}
         if cfg.method == "particles" else {})  # fmt: skip
