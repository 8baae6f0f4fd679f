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


def evaluate(
    rollouts: InFile, out: OutDir, *, orm: ModelOpt = None, prm: ModelOpt = None,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Evaluate the policy's rollouts and the reward models; write metrics, curves, report."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "eval", EvalConfig)
    table = artifacts.read_artifact(rollouts, "rollouts")
    rows = [r for r in table.to_pylist() if r["split"] == cfg.split]
    if not rows:
        raise InputError(f"{rollouts}: no rollouts in split {cfg.split}")
    models = {name: path for name, path in (("orm", orm), ("prm", prm)) if path is not None}
    for path in models.values():
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a model directory (no config.json)")
    from rwpipe.eval import processbench
    from rwpipe.eval.curves import policy_accuracy, selection_curves
    from rwpipe.eval.report import write_outputs
    from rwpipe.progress import progress_bar
    from rwpipe.runtime import pick_device, seed_everything
    from rwpipe.score import Scorer, Solution

    items = processbench.load_processbench(cfg.processbench, cfg.processbench_max) if (
        cfg.processbench and prm is not None) else None  # fmt: skip
    seed_everything(base.seed)
    device = pick_device(base.device)
    metrics: dict = {"policy": policy_accuracy(rows, cfg.ns)}
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
        if name == "prm" and items is not None:
            metrics["processbench"] = processbench.evaluate(
                scorer, items, cfg.threshold, cfg.batch_size
            )
    curves = selection_curves(rows, cfg.ns, scores, cfg.aggregations, cfg.draws, base.seed)
    top = max(c["n"] for c in curves)
    metrics["best_of_n"] = {c["rule"]: c["accuracy"] for c in curves if c["n"] == top}
    metrics["best_of_n_size"] = top
    write_outputs(out, metrics, curves, {"base": base, "eval": cfg})
    print_summary(
        f"eval -> {out}",
        metrics["policy"] | {f"N={top} " + k: round(v, 3) for k, v in metrics["best_of_n"].items()},
    )
