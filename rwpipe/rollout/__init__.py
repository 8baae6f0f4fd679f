"""Rollouts: n sampled solutions per problem, split into steps and checked against the gold answer.

`run_rollout` works through the problems in shards of `cfg.shard_size`. Each shard is one
`generate` call (so the engine batches all its prompts × n samples) with a seed derived from
the base seed and the shard index, then its verdicts are computed and the shard is written.
A killed run restarted with the same params skips finished shards; because a shard's seed does
not depend on what ran before it, the resumed run produces the same rows as an uninterrupted
one, up to the backend's own reproducibility (see README "Reproducibility").
"""

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from rwpipe.artifacts import ShardStore
from rwpipe.backends import Completion, Generator, SamplingParams
from rwpipe.config import BaseConfig, RolloutConfig
from rwpipe.errors import InputError
from rwpipe.progress import Stopwatch, progress_bar
from rwpipe.runtime import stable_seed
from rwpipe.steps import StepRule
from rwpipe.verify import VerifierPool


def select_problems(problems: pa.Table, splits: tuple[str, ...], where: str) -> pa.Table:
    """The problems of `splits`, in file order; an empty selection is an input error."""
    mask = [s in splits for s in problems["split"].to_pylist()]
    selected = problems.filter(pa.array(mask, pa.bool_()))
    if selected.num_rows == 0:
        raise InputError(f"{where}: no problems in split(s) {', '.join(splits)}")
    return selected


def sampling_params(cfg: RolloutConfig, seed: int) -> SamplingParams:
    s = cfg.sampling
    return SamplingParams(
        n=s.n,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        stop=tuple(s.stop),
        seed=seed,
        logprobs=True,
    )


def build_prompts(generator: Generator, questions: list[str], cfg: RolloutConfig) -> list[str]:
    """Each question through `prompt_template` and the model's chat template, as sent."""
    return [
        generator.chat_prompt(cfg.prompt_template.replace("{question}", q), cfg.system_prompt)
        for q in questions
    ]


def _rows(
    shard: pa.Table,
    prompts: list[str],
    outputs: list[list[Completion]],
    verdicts: list,
    seed: int,
    steps: StepRule,
) -> list[dict]:
    rows, k = [], 0
    for problem, prompt, completions in zip(shard.to_pylist(), prompts, outputs, strict=True):
        for sample_idx, c in enumerate(completions):
            v = verdicts[k]
            k += 1
            rows.append(
                {
                    "problem_id": problem["problem_id"],
                    "sample_idx": sample_idx,
                    "split": problem["split"],
                    "question": problem["question"],
                    "prompt": prompt,
                    "completion": c.text,
                    "token_ids": list(c.token_ids),
                    "logprobs": list(c.logprobs),
                    "finish_reason": c.finish_reason,
                    "num_tokens": len(c.token_ids),
                    "steps": steps.split(c.text),
                    "pred": v.pred,
                    "gold": problem["answer"],
                    "verdict": v.verdict,
                    "seed": seed,
                }
            )
    return rows


def _run_shard(
    shard: pa.Table,
    generator: Generator,
    cfg: RolloutConfig,
    seed: int,
    steps: StepRule,
    verifier: VerifierPool,
    advance: Callable[[int, int], None],
) -> tuple[pa.Table, dict]:
    clock = Stopwatch()
    prompts = build_prompts(generator, shard["question"].to_pylist(), cfg)
    outputs = generator.generate(prompts, sampling_params(cfg, seed), progress=advance)
    gen_seconds = clock.seconds
    flat = [c for cs in outputs for c in cs]
    golds = [g for g, cs in zip(shard["answer"].to_pylist(), outputs, strict=True) for _ in cs]
    verdicts = verifier.check(golds, [c.text for c in flat])
    rows = _rows(shard, prompts, outputs, verdicts, seed, steps)
    tokens = sum(len(c.token_ids) for c in flat)
    correct = sum(v.verdict == "correct" for v in verdicts)
    stats = {
        "rows": len(rows),
        "tokens": tokens,
        "generate_seconds": gen_seconds,
        "correct": correct,
    }
    return pa.Table.from_pylist(rows), stats


def run_rollout(
    problems: pa.Table,
    generator: Generator,
    cfg: RolloutConfig,
    *,
    seed: int,
    store: ShardStore,
    steps: StepRule | None = None,
) -> tuple[int, dict]:
    """Sample, split and verify every problem, shard by shard, into `store`.

    Args:
        problems: the problems to sample (see `select_problems`), in a fixed order.
        generator: any backend (vLLM, transformers); the algorithm never sees which.
        cfg: the rollout section.
        seed: the base seed; shard i samples with `stable_seed(seed, "rollout", i)`.
        store: where finished shards go; shards already there are skipped.
        steps: the step rule (default: a blank line ends a step).

    Returns:
        The number of shards and the run summary (rows, tokens, seconds, tokens/s), summed over
        the shards of this run and the resumed ones.
    """
    selected, steps = problems, steps or StepRule()
    size = cfg.shard_size
    num_shards = -(-selected.num_rows // size)
    done = store.done()
    todo = [i for i in range(num_shards) if i not in done]
    resumed_problems = sum(min(size, selected.num_rows - i * size) for i in done)
    with (
        VerifierPool() as verifier,
        progress_bar(
            selected.num_rows, "rollout", "prompts", completed=resumed_problems
        ) as advance,
    ):
        for i in todo:
            shard_seed = stable_seed(seed, "rollout", i)
            shard = selected.slice(i * size, size)
            table, stats = _run_shard(shard, generator, cfg, shard_seed, steps, verifier, advance)
            store.write(i, table, stats)
    return num_shards, summarize(store.stats(), resumed_shards=len(done))


def summarize(shard_stats: list[dict], resumed_shards: int = 0) -> dict:
    """Totals over shards: rows, tokens, generation seconds and tokens/s."""
    rows = sum(s["rows"] for s in shard_stats)
    tokens = sum(s["tokens"] for s in shard_stats)
    seconds = sum(s["generate_seconds"] for s in shard_stats)
    return {
        "rows": rows,
        "tokens": tokens,
        "generate_seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0,
        "correct_fraction": round(sum(s["correct"] for s in shard_stats) / max(rows, 1), 4),
        "shards": len(shard_stats),
        "resumed_shards": resumed_shards,
    }


def run(cfg: RolloutConfig, base: BaseConfig, *, problems: Path, model_dir: Path,
        out: Path) -> dict:  # fmt: skip
    """Stage `rollout`: sample the problems of `cfg.splits` with the model into OUT, shard by
    shard (a rerun with the same params and inputs resumes); returns the run summary."""
    from rwpipe import artifacts
    from rwpipe.backends import load_engine

    selected = select_problems(
        artifacts.read_artifact(problems, "problems"), cfg.splits, str(problems)
    )
    artifacts.check_model_dir(model_dir, hint=True)
    fingerprint = {
        "base": base,
        "rollout": cfg,
        "problems": artifacts.path_digest(problems),
        "model": artifacts.path_digest(model_dir),
    }
    store = artifacts.ShardStore(out, "rollouts", fingerprint)
    generator = load_engine(model_dir, cfg.engine, device=base.device, seed=base.seed)
    try:
        num_shards, stats = run_rollout(
            selected, generator, cfg, seed=base.seed, store=store,
            steps=StepRule.from_config(base),
        )  # fmt: skip
        stats["dtype"] = getattr(generator, "dtype", "unknown")
    finally:
        generator.close()
    store.finish(num_shards, section="rollout", config=cfg, stats=stats)
    return stats
