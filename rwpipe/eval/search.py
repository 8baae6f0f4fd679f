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

Departure: steps are cut on the pipeline's step separator (a blank line by default) via a
stop string, so the step rule is the one the PRM was trained with; a rule other than
`blank_line` uses "\\n" as the stop string.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rwpipe.backends import Generator, SamplingParams
from rwpipe.config import SearchConfig
from rwpipe.eval.metrics import aggregate
from rwpipe.runtime import stable_seed


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
    separator: str = "\n\n",
    eos_token_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Search every problem; one record per problem: the chosen solution text, its score, the
    tokens the search generated for that problem, and the depth reached.

    Args:
        generator: any engine.
        score: (questions, prompts, step lists) -> step scores per solution (a PRM).
        questions, prompts: the problems and their chat prompts.
        cfg: search knobs.
        seed: sampling seed (per depth, derived from it).
        separator: the stop string that ends a step (the step rule's separator).
        eos_token_id: the end-of-solution token; by default the generator tokenizer's.
        progress: called with (problems finished, tokens) as the search goes.
    """
    if eos_token_id is None:
        eos_token_id = generator.tokenizer.eos_token_id  # type: ignore[attr-defined]
    beams = [[Beam()] for _ in questions]
    spent = [0] * len(questions)
    depth = 0
    while any(not b.finished for group in beams for b in group):
        live = [(p, b) for p, group in enumerate(beams) for b in group if not b.finished]
        params = SamplingParams(
            n=cfg.expansions, temperature=cfg.temperature, max_new_tokens=cfg.step_max_tokens,
            stop=(separator,), seed=stable_seed(seed, "search", depth), logprobs=False,
        )  # fmt: skip
        outputs = generator.generate([prompts[p] + "".join(b.steps) for p, b in live], params)
        candidates: list[list[Beam]] = [[b for b in group if b.finished] for group in beams]
        fresh: list[tuple[int, Beam]] = []
        for (p, parent), completions in zip(live, outputs, strict=True):
            for c in completions:
                spent[p] += len(c.token_ids)
                ended = bool(c.token_ids) and c.token_ids[-1] == eos_token_id
                cut_at_separator = c.finish_reason == "stop" and not ended
                text = c.text + (separator if cut_at_separator else "")
                tokens = parent.tokens + len(c.token_ids)
                steps = parent.steps + ([text] if text else [])
                done = (
                    ended or not text or len(steps) >= cfg.max_steps
                    or tokens >= cfg.max_new_tokens
                )  # fmt: skip
                beam = Beam(steps, finished=done, tokens=tokens)
                candidates[p].append(beam)
                fresh.append((p, beam))
        got = score([questions[p] for p, _ in fresh], [prompts[p] for p, _ in fresh],
                    [b.steps for _, b in fresh])  # fmt: skip
        for (_, b), steps in zip(fresh, got, strict=True):
            value = aggregate(steps, cfg.aggregation) if steps else float("nan")
            b.score = value if value == value else float("-inf")  # no steps: ranks last
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


def evaluate_search(
    rows: Sequence[Mapping[str, Any]],
    generator: Generator,
    scorer: Any,
    prm_scores: Mapping[tuple[str, int], tuple[float | None, Sequence[float]]],
    cfg: SearchConfig,
    *,
    seed: int,
    separator: str,
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
    """
    from rwpipe.eval.curves import _groups, selection_curves
    from rwpipe.progress import progress_bar
    from rwpipe.score import Solution
    from rwpipe.verify import verify_many

    groups = _groups(rows)
    pids = list(groups)[: cfg.problems]
    firsts = [groups[p][0] for p in pids]

    def score(questions, prompts, step_lists):
        sols = [Solution(q, p, s) for q, p, s in zip(questions, prompts, step_lists, strict=True)]
        return [steps for _, steps in scorer.score(sols, batch_size)]

    with progress_bar(len(pids), "search", "problems") as advance:
        results = beam_search(
            generator, score, [r["question"] for r in firsts], [r["prompt"] for r in firsts],
            cfg, seed=seed, separator=separator, progress=advance,
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
    curves = selection_curves(sub, [matched], {"prm": prm_scores}, (cfg.aggregation,), draws, seed)
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
