"""DVC stage `eval`: policy accuracy, best-of-N and weighted-vote curves with the trained
reward models, ProcessBench for the PRM; metrics.json, bon.csv, bon.png, report.md.

rwpipe eval data/rollouts.arrow data/eval --orm data/models/orm --prm data/models/prm
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import BaseConfig, EvalConfig, load_section
from rwpipe.errors import InputError
from stages.options import DEFAULT_PARAMS, InFile, OutDir, ParamsOpt
from stages.report import print_summary

ModelOpt = Annotated[Path | None, typer.Option(help="Reward model directory.")]


RLRollouts = Annotated[
    Path | None,
    typer.Option(help="Rollouts of the RL policy on the same split: compared with the base."),
]


CriticOpt = Annotated[
    Path | None,
    typer.Option(help="A model to evaluate as a ProcessBench critic (with eval.processbench)."),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(help="Policy model for PRM-guided beam search (with eval.search.problems > 0)."),
]


def evaluate(
    rollouts: InFile, out: OutDir, *, orm: ModelOpt = None, prm: ModelOpt = None,
    rl_rollouts: RLRollouts = None, policy: PolicyOpt = None, critic: CriticOpt = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Evaluate the policy's rollouts and the reward models; write metrics, curves, report."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "eval", EvalConfig)
    table = artifacts.read_artifact(rollouts, "rollouts")
    rows = [r for r in table.to_pylist() if r["split"] == cfg.split]
    if not rows:
        raise InputError(f"{rollouts}: no rollouts in split {cfg.split}")
    rl_rows = None
    if rl_rollouts is not None:
        rl_table = artifacts.read_artifact(rl_rollouts, "rollouts")
        rl_rows = [r for r in rl_table.to_pylist() if r["split"] == cfg.split]
        if not rl_rows:
            raise InputError(f"{rl_rollouts}: no rollouts in split {cfg.split}")
        shared = {r["problem_id"] for r in rows} & {r["problem_id"] for r in rl_rows}
        if not shared:
            raise InputError(f"{rl_rollouts}: no problem in common with {rollouts}")
    if cfg.search.problems and (policy is None or prm is None):
        raise InputError("eval.search.problems > 0 needs --policy DIR and --prm DIR")
    if policy is not None and not (policy / "config.json").is_file():
        raise InputError(f"{policy}: not a model directory (no config.json)")
    models = {name: path for name, path in (("orm", orm), ("prm", prm)) if path is not None}
    for path in models.values():
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a model directory (no config.json)")
    from rwpipe.eval import processbench
    from rwpipe.eval.curves import (
        compare_policies,
        pairwise_table,
        policy_accuracy,
        selection_curves,
    )
    from rwpipe.eval.report import write_outputs
    from rwpipe.progress import progress_bar
    from rwpipe.runtime import pick_device, seed_everything
    from rwpipe.score import Scorer, Solution

    subsets = processbench.load_subsets(cfg.processbench, cfg.processbench_max) if (
        cfg.processbench) else None  # fmt: skip
    seed_everything(base.seed)
    device = pick_device(base.device)
    metrics: dict = {"policy": policy_accuracy(rows, cfg.ns)}
    if rl_rows is not None:
        metrics["policy_rl"] = policy_accuracy(rl_rows, cfg.ns)
        metrics["rl_vs_base"] = compare_policies(rows, rl_rows)
    scores = {}
    solutions = [Solution(r["question"], r["prompt"], r["steps"]) for r in rows]
    for name, path in models.items():
        scorer = Scorer(path, device=device)
        with progress_bar(len(rows), f"score ({name})", "solutions") as advance:
            got = []
            for i in range(0, len(rows), cfg.batch_size):
                got.extend(scorer.score(solutions[i : i + cfg.batch_size], cfg.batch_size))
                advance(min(cfg.batch_size, len(rows) - i), 0)
        scores[name] = {
            (r["problem_id"], r["sample_idx"]): s for r, s in zip(rows, got, strict=True)
        }
        if name == "prm" and cfg.search.problems and policy is not None:
            from rwpipe.backends import load_engine
            from rwpipe.eval.search import evaluate_search

            generator = load_engine(policy, cfg.search.engine, device=base.device,
                                    seed=base.seed)  # fmt: skip
            try:
                metrics["search"] = evaluate_search(
                    rows, generator, scorer, scores[name], cfg.search, seed=base.seed,
                    separator=_separator(base), draws=cfg.draws, batch_size=cfg.batch_size,
                )  # fmt: skip
            finally:
                generator.close()
        if name == "prm" and subsets is not None:
            threshold, rule = cfg.threshold, ""
            if cfg.threshold_tune:
                tune = [x for v in processbench.load_subsets(cfg.threshold_tune).values()
                        for x in v]  # fmt: skip
                scored = processbench.score_items(scorer, tune, cfg.batch_size)
                threshold, f1 = processbench.tune_threshold(scored, [x["label"] for x in tune])
                rule = (f"tuned on {cfg.threshold_tune} ({len(tune)} solutions, "
                        f"F1 {f1:.3f}): {threshold:.4g}")  # fmt: skip
            per = {k: processbench.evaluate(scorer, v, threshold, cfg.batch_size, rule)
                   for k, v in subsets.items()}  # fmt: skip
            metrics["processbench"] = per | {"average": processbench.average_subsets(per)}
    if subsets is not None and (critic is not None or cfg.critic.base_url):
        metrics["processbench_critic"] = _critic(critic, subsets, cfg, base)
    if scores:
        metrics["pairwise"] = pairwise_table(rows, scores, cfg.aggregations)
    curves = selection_curves(rows, cfg.ns, scores, cfg.aggregations, cfg.draws, base.seed)
    top = max(c["n"] for c in curves)
    metrics["best_of_n"] = {c["rule"]: c["accuracy"] for c in curves if c["n"] == top}
    metrics["best_of_n_size"] = top
    write_outputs(out, metrics, curves, {"base": base, "eval": cfg})
    print_summary(
        f"eval -> {out}",
        metrics["policy"] | {f"N={top} " + k: round(v, 3) for k, v in metrics["best_of_n"].items()},
    )


def _critic(critic: Path | None, subsets: dict, cfg: EvalConfig, base: BaseConfig) -> dict:
    """ProcessBench for an LLM critic: a local model (`--critic`) or `eval.critic.base_url`."""
    from rwpipe.backends import load_engine
    from rwpipe.eval import processbench
    from rwpipe.judge import LocalJudge, OpenAIJudge

    j, generator = cfg.critic, None
    if j.base_url:
        backend = OpenAIJudge.from_config(j)
    else:
        generator = load_engine(critic, cfg.search.engine, device=base.device, seed=base.seed)
        backend = LocalJudge(generator)  # fmt: skip
    try:
        per = {
            k: processbench.evaluate_critic(backend, v, k=j.k, temperature=j.temperature,
                                            max_tokens=j.max_new_tokens, seed=base.seed)
            for k, v in subsets.items()
        }  # fmt: skip
    finally:
        if generator is not None:
            generator.close()
    return per | {"average": processbench.average_subsets(per)}


def _separator(base: BaseConfig) -> str:
    """The stop string that ends one step under the step rule."""
    return "\n\n" if base.step_split == "blank_line" else "\n"
