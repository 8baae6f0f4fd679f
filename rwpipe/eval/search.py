"""PRM-guided step-level beam search (test-time compute), through the Generator interface.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rwpipe.backends import Completion, Generator, SamplingParams
from rwpipe.config import SearchConfig
from rwpipe.eval.metrics import ScoreKind, aggregate, score_kind
from rwpipe.runtime import stable_seed
from rwpipe.steps import StepRule


@dataclass
class Beam:
    steps: list[str] = field(default_factory=list)
    score: float = float("-inf")
    finished: bool = False
    tokens: int = 0  # generated tokens along this beam's path


def beam_search(
    generator: Generator,
    score: Callable[[Sequence[str], Sequence[str], Sequence[Sequence[str]]], list[list[float]]],
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
    """Search every problem; one record per problem: the chosen solution text, its score, the
    tokens the search generated for that problem, and the depth reached.

    Args:
        generator: any engine.
        score: (questions, prompts, step lists) -> step scores per solution (a PRM).
        questions, prompts: the problems and their chat prompts.
        cfg: search knobs.
        seed: sampling seed (per depth, derived from it).
        rule: what a step is (default: a blank line ends one).
        eos_token_id: the end-of-solution token; by default the generator tokenizer's.
        progress: called with (problems finished, tokens) as the search goes.
        kind: the PRM's score kind; `cfg.aggregation` must be defined for it (a ValueError
            otherwise, `rwpipe.eval.metrics.undefined`).
    """
    rule = rule if rule is not None else StepRule()
    if eos_token_id is None:
        eos_token_id = generator.tokenizer.eos_token_id  # type: ignore[attr-defined]
    beams = [[Beam()] for _ in questions]
    spent = [0] * len(questions)
    depth = 0
    while any(not b.finished for group in beams for b in group):
        live = [(p, b) for p, group in enumerate(beams) for b in group if not b.finished]
        params = SamplingParams(
            n=cfg.expansions, temperature=cfg.temperature, max_new_tokens=cfg.step_max_tokens,
            stop=rule.stop, seed=stable_seed(seed, "search", depth), logprobs=False,
        )  # fmt: skip
        outputs = generator.generate([prompts[p] + "".join(b.steps) for p, b in live], params)
        candidates: list[list[Beam]] = [[b for b in group if b.finished] for group in beams]
        fresh: list[tuple[int, Beam]] = []
        for (p, parent), completions in zip(live, outputs, strict=True):
            for c in completions:
                spent[p] += len(c.token_ids)
                beam = _child(parent, c, rule, eos_token_id, cfg)
                candidates[p].append(beam)
                fresh.append((p, beam))
        got = score([questions[p] for p, _ in fresh], [prompts[p] for p, _ in fresh],
                    [b.steps for _, b in fresh])  # fmt: skip
        for (_, b), steps in zip(fresh, got, strict=True):
            value = aggregate(steps, cfg.aggregation, kind)
            b.score = value if value == value else float("-inf")  # unscored: ranks last
        for p in {p for p, _ in live}:
            group = sorted(candidates[p], key=lambda b: b.score, reverse=True)
            beams[p] = group[: cfg.beam_width]
            if progress is not None:
                progress(int(all(b.finished for b in beams[p])), 0)
        depth += 1
    out = []
    for p, group in enumerate(beams):
        best = max(group, key=lambda b: b.score)
        out.append({"text": "".join(best.steps), "steps": best.steps, "score": best.score,
                    "tokens": spent[p]})  # fmt: skip
    return out


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
        "config": f"beam {cfg.beam_width} x {cfg.expansions}, agg {cfg.aggregation}",
    }
