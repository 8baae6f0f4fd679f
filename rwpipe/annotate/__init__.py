"""Labels for rollouts: outcome labels (math-verify) and step labels (Math-Shepherd, OmegaPRM).

`run_annotate` works through the rollouts a few problems at a time (a shard: all rollouts of
`cfg.shard_size` problems, so that sibling solutions share prefixes and the OmegaPRM tree).
For each shard it re-checks every rollout's final answer in the verifier pool, runs the step
method, and writes the shard with what it cost (completions and generated tokens per rollout).
A killed run resumes at the first unfinished shard; each shard's sampling seed depends only
on its index, so the resumed run ends with the same rows.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from rwpipe.annotate.estimate import MCEstimator
from rwpipe.annotate.methods import StepLabels, math_shepherd, omegaprm
from rwpipe.artifacts import ShardStore
from rwpipe.backends import Generator
from rwpipe.config import AnnotateConfig
from rwpipe.errors import InputError
from rwpipe.progress import Stopwatch, progress_bar
from rwpipe.runtime import stable_seed
from rwpipe.steps import Solution
from rwpipe.verify import VerifierPool

__all__ = ["annotate_shard", "plan_shards", "run_annotate", "summarize"]


def plan_shards(rollouts: pa.Table, problems_per_shard: int) -> list[list[int]]:
    """Row indices of each shard: the rollouts of consecutive problems, in file order."""
    order: dict[str, list[int]] = {}
    for row, pid in enumerate(rollouts["problem_id"].to_pylist()):
        order.setdefault(pid, []).append(row)
    groups = list(order.values())
    return [
        [row for group in groups[i : i + problems_per_shard] for row in group]
        for i in range(0, len(groups), problems_per_shard)
    ]


def _outcome(verdict: str) -> int | None:
    return {"correct": 1, "incorrect": 0}.get(verdict)


def annotate_shard(
    rows: list[dict[str, Any]],
    generator: Generator | None,
    cfg: AnnotateConfig,
    *,
    seed: int,
    verifier: VerifierPool,
    sample: bool,
    progress: Callable[[int, int], None] | None = None,
    judge: Any = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Label one shard of rollout rows.

    Args:
        rows: rollout rows (problem_id, sample_idx, split, question, prompt, steps, gold,
            finish_reason, completion).
        generator: the completer; may be None when `cfg.method` is "verify" or not `sample`.
        cfg: the annotate section.
        seed: this shard's sampling seed.
        verifier: the checker pool.
        sample: False past the token budget: outcome labels only.
        progress: (items, tokens) callback for generated tokens.
        judge: the `rwpipe.judge.JudgeBackend` of methods judge and consensus.

    Returns:
        The labels table and the shard's stats.
    """
    clock = Stopwatch()
    verdicts = verifier.check([r["gold"] for r in rows], [r["completion"] for r in rows])
    solutions = [
        Solution.from_row(r, index=i, outcome=_outcome(v.verdict))
        for i, (r, v) in enumerate(zip(rows, verdicts, strict=True))
    ]
    chosen = (
        [s for s, r in zip(solutions, rows, strict=True) if r["split"] in cfg.splits]
        if sample and cfg.method != "verify"
        else []
    )
    labels, costs = _mc_labels(chosen, generator, cfg, seed, verifier, progress)
    if not sample:
        labels = _free_labels(solutions, rows, cfg)
    judged: dict[int, Any] = {}
    if chosen and cfg.method in ("judge", "consensus"):
        if judge is None:
            raise ValueError(f"method {cfg.method} needs a judge")
        judged = _judge(judge, chosen, rows, cfg, seed)
    out = []
    for s, r, v in zip(solutions, rows, verdicts, strict=True):
        lab = labels.get(s.index) or StepLabels.empty("outcome_only", len(s.steps))
        j = judged.get(s.index)
        outcome = s.outcome
        if j is not None:
            lab, outcome = _with_judgement(cfg, lab, j, len(s.steps), outcome)
        out.append(_label_row(r, s, v, outcome, lab, costs.get(s.index), j, cfg.method))
    table = pa.Table.from_pylist(out)
    stats = _shard_stats(out, clock.seconds)
    return table, stats


def _mc_method(cfg: AnnotateConfig) -> str:
    """The Monte-Carlo method the labels come from (consensus: the one it checks against)."""
    return cfg.consensus_of if cfg.method == "consensus" else cfg.method


def _free_labels(solutions: list[Solution], rows: list[dict], cfg: AnnotateConfig) -> dict:
    """Past the token budget: the labels that cost nothing still go on. OmegaPRM, and
    Math-Shepherd under `select: incorrect`, label a correct solution all-correct without
    sampling (`inferred_correct`), so the correct rollouts of every shard keep those labels;
    without them a budget would leave the PRM only the first shards' solutions to learn from
    (on a hard task, incorrect ones only)."""
    from rwpipe.annotate.methods import inferred_correct, unlabellable

    mc_method = _mc_method(cfg)
    if not (mc_method == "omegaprm" or (mc_method == "mc" and cfg.select == "incorrect")):
        return {}
    return {s.index: inferred_correct(s) for s, r in zip(solutions, rows, strict=True)
            if r["split"] in cfg.splits and s.outcome == 1 and unlabellable(s) is None}  # fmt: skip


def _mc_labels(chosen: list[Solution], generator: Generator | None, cfg: AnnotateConfig,
               seed: int, verifier: VerifierPool,
               progress: Callable[[int, int], None] | None) -> tuple[dict, dict]:  # fmt: skip
    """Monte-Carlo step labels (Math-Shepherd or OmegaPRM) of the chosen solutions, by row
    index, and what each cost; nothing when the method samples no completions."""
    mc_method = _mc_method(cfg)
    if not chosen or mc_method not in ("mc", "omegaprm"):
        return {}, {}
    if generator is None:
        raise ValueError(f"method {cfg.method} needs a generator")
    c = cfg.completion
    estimator = MCEstimator(generator, verifier, temperature=c.temperature, top_p=c.top_p,
                            max_new_tokens=c.max_new_tokens, seed=seed,
                            progress=progress)  # fmt: skip
    if mc_method == "mc":
        found = math_shepherd(chosen, estimator, k=c.k, select=cfg.select)
    else:
        found = omegaprm(chosen, estimator, k=c.k, k_first=c.k_first)
    return {s.index: lab for s, lab in zip(chosen, found, strict=True)}, estimator.costs


def _label_row(r: dict[str, Any], s: Solution, v: Any, outcome: int | None, lab: StepLabels,
               cost: Any, j: Any, method: str) -> dict[str, Any]:  # fmt: skip
    """One row of the labels artifact."""
    return {
        "problem_id": r["problem_id"],
        "sample_idx": r["sample_idx"],
        "split": r["split"],
        "question": r["question"],
        "prompt": r["prompt"],
        "steps": s.steps,
        "gold": r["gold"],
        "pred": v.pred,
        "verdict": v.verdict,
        "outcome": outcome,
        "method": method,
        "status": lab.status,
        "step_hard": lab.hard,
        "step_soft": lab.soft,
        "step_visits": lab.visits,
        "first_error": lab.first_error,
        "completions": cost.completions if cost else 0,
        "tokens": cost.tokens if cost else 0,
        "judge_value": _judge_int(j.value) if j is not None else None,
        "judge_raw": j.raw if j is not None else None,
    }


def _judge(judge: Any, chosen: list[Solution], rows: list[dict[str, Any]], cfg: AnnotateConfig,
           seed: int) -> dict[int, Any]:  # fmt: skip
    """The judge's verdict or first-error index for each chosen rollout, by index."""
    from rwpipe.judge import judge_first_errors, judge_outcomes

    j = cfg.judge
    kw = {"k": j.k, "temperature": j.temperature, "max_tokens": j.max_new_tokens, "seed": seed}
    if j.mode == "critique":
        got = judge_first_errors(judge, [(rows[s.index]["question"], s.steps) for s in chosen],
                                 **kw)  # fmt: skip
    else:
        items = [
            (rows[s.index]["question"], rows[s.index]["completion"],
             s.gold if j.with_reference else None)
            for s in chosen
        ]  # fmt: skip
        got = judge_outcomes(judge, items, **kw, sentence=j.verdict_parse == "boxed_or_sentence")
    return {s.index: g for s, g in zip(chosen, got, strict=True)}


def _judge_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return 1 if value == "correct" else 0
    return int(value)


def _with_judgement(cfg: AnnotateConfig, lab: StepLabels, judgement: Any, num_steps: int,
                    outcome: int | None) -> tuple[StepLabels, int | None]:  # fmt: skip
    """The labels a judgement gives (method judge) or keeps (method consensus)."""
    value = judgement.value
    if cfg.method == "consensus":
        if lab.first_error is None:  # nothing to compare (no gold, no steps, over budget)
            return lab, outcome
        agree = value is not None and lab.first_error is not None and value == lab.first_error
        return (lab if agree else StepLabels.empty("disagreed", num_steps)), outcome
    if value is None:
        return StepLabels.empty("abstained", num_steps), outcome
    if cfg.judge.mode == "verdict":
        # the judge's verdict is the outcome label only where no gold answer exists
        judged = 1 if value == "correct" else 0
        return StepLabels.empty("judged", num_steps), judged if outcome is None else outcome
    hard = [1 if i < value or value == -1 else 0 if i == value else None
            for i in range(num_steps)]  # fmt: skip
    return StepLabels("judged", hard, [None] * num_steps, [0] * num_steps, value), outcome


def _shard_stats(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    step_labels = sum(sum(h is not None for h in r["step_hard"]) for r in rows)
    sampled = [r for r in rows if r["status"] == "labelled"]
    return {
        "rows": len(rows),
        "correct": sum(r["outcome"] == 1 for r in rows),
        "unverifiable": sum(r["verdict"] == "unverifiable" for r in rows),
        "step_labelled_rollouts": sum(r["status"] in ("labelled", "inferred") for r in rows),
        "sampled_rollouts": len(sampled),
        "step_labels": step_labels,
        "sampled_step_labels": sum(sum(h is not None for h in r["step_hard"]) for r in sampled),
        "first_errors": sum(r["first_error"] is not None and r["first_error"] >= 0 for r in rows),
        "completions": sum(r["completions"] for r in rows),
        "tokens": sum(r["tokens"] for r in rows),
        "seconds": seconds,
    }


def run_annotate(
    rollouts: pa.Table,
    generator: Generator | None,
    cfg: AnnotateConfig,
    *,
    seed: int,
    store: ShardStore,
    where: str = "rollouts",
    judge: Any = None,
) -> tuple[int, dict[str, Any]]:
    """Label every rollout, shard by shard, into `store`; see the module docstring.

    Returns:
        The number of shards and the run summary (`summarize`).
    """
    if rollouts.num_rows == 0:
        raise InputError(f"{where}: no rollouts to label")
    shards = plan_shards(rollouts, cfg.shard_size)
    done = store.done()
    resumed_rows = sum(len(shards[i]) for i in done if i < len(shards))
    with (
        VerifierPool() as verifier,
        progress_bar(
            rollouts.num_rows, f"annotate ({cfg.method})", "labels", completed=resumed_rows
        ) as advance,
    ):
        for i, rows in enumerate(shards):
            if i in done:
                continue
            spent = sum(s["tokens"] for s in store.stats())
            sample = cfg.budget_tokens == 0 or spent < cfg.budget_tokens
            table, stats = annotate_shard(
                rollouts.take(rows).to_pylist(),
                generator,
                cfg,
                seed=stable_seed(seed, "annotate", i),
                verifier=verifier,
                sample=sample,
                progress=advance,
                judge=judge,
            )
            store.write(i, table, stats)
            advance(len(rows), 0)
    return len(shards), summarize(store.stats(), resumed_shards=len(done))


def summarize(shard_stats: list[dict[str, Any]], resumed_shards: int = 0) -> dict[str, Any]:
    """Totals over shards, and the cost per label: what a reader of a PRM paper wants to know."""

    def total(key: str) -> int:
        return sum(s[key] for s in shard_stats)

    rows, seconds = total("rows"), sum(s["seconds"] for s in shard_stats)
    sampled_labels = total("sampled_step_labels")
    return {
        "rows": rows,
        "outcome_accuracy": round(total("correct") / max(rows, 1), 4),
        "unverifiable": total("unverifiable"),
        "step_labelled_rollouts": total("step_labelled_rollouts"),
        "sampled_rollouts": total("sampled_rollouts"),
        "step_labels": total("step_labels"),
        "first_errors_found": total("first_errors"),
        "completions": total("completions"),
        "tokens": total("tokens"),
        "completions_per_sampled_step": round(total("completions") / max(sampled_labels, 1), 3),
        "tokens_per_sampled_step": round(total("tokens") / max(sampled_labels, 1), 1),
        "tokens_per_sampled_rollout": round(total("tokens") / max(total("sampled_rollouts"), 1), 1),
        "seconds": round(seconds, 2),
        "labels_per_s": round(rows / seconds, 3) if seconds > 0 else 0.0,
        "tokens_per_s": round(total("tokens") / seconds, 1) if seconds > 0 else 0.0,
        "shards": len(shard_stats),
        "resumed_shards": resumed_shards,
    }


def run(cfg: AnnotateConfig, base: Any, *, rollouts: Path, completer: Path, out: Path) -> dict:
    """Stage `annotate`: label ROLLOUTS into OUT, shard by shard (a rerun with the same params
    and inputs resumes); returns the run summary.

    The completer (usually the policy) continues step prefixes for `mc` / `omegaprm` and is
    the local judge of `judge` / `consensus` unless `cfg.judge.base_url` names a server; with
    `verify` or a server judge no model is loaded.
    """
    from rwpipe import artifacts
    from rwpipe.backends import load_engine

    table = artifacts.read_artifact(rollouts, "rollouts")
    if table.num_rows == 0:  # before any engine starts
        raise InputError(f"{rollouts}: no rollouts to label")
    remote_judge = cfg.method == "judge" and bool(cfg.judge.base_url)
    sampling = cfg.method != "verify" and not remote_judge
    if sampling:
        artifacts.check_model_dir(completer, hint=True)
    fingerprint = {
        "base": base,
        "annotate": cfg,
        "rollouts": artifacts.path_digest(rollouts),
        "completer": artifacts.path_digest(completer) if sampling else None,
    }
    store = ShardStore(out, "labels", fingerprint)
    generator = (
        load_engine(completer, cfg.engine, device=base.device, seed=base.seed) if sampling else None
    )
    try:
        num_shards, stats = run_annotate(
            table, generator, cfg, seed=base.seed, store=store, where=str(rollouts),
            judge=_make_judge(cfg, generator),
        )  # fmt: skip
        if generator is not None:
            stats["dtype"] = getattr(generator, "dtype", "unknown")
    finally:
        if generator is not None:
            generator.close()
    store.finish(num_shards, section="annotate", config=cfg, stats=stats)
    return stats


def _make_judge(cfg: AnnotateConfig, generator: Generator | None) -> Any:
    """The judge of methods judge and consensus: a server, or the completer model."""
    if cfg.method not in ("judge", "consensus"):
        return None
    from rwpipe.judge import LocalJudge, OpenAIJudge

    return OpenAIJudge.from_config(cfg.judge) if cfg.judge.base_url else LocalJudge(generator)
