"""The search stage's outputs beside its records: metrics.json (DVC metrics), curve.json
(DVC plot) and curve.png (accuracy against generated tokens, one line per method), and the
section of the eval report that reads them back (`rwpipe eval --search-budget`)."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rwpipe.errors import InputError


def write_outputs(out: Path, metrics: Mapping[str, Any]) -> None:
    """metrics.json, curve.json (the points, for DVC plots) and curve.png: accuracy against
    generated tokens per problem, one line per method, each point labelled with its N."""
    from rwpipe.artifacts import write_json

    curve = [{"method": m, "budget": int(n)} | p for m, by_n in metrics["points"].items()
             for n, p in by_n.items()]  # fmt: skip
    write_json(dict(metrics), out / "metrics.json")
    write_json(curve, out / "curve.json")
    _plot(out / "curve.png", curve)


def _plot(path: Path, curve: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(c["method"] for c in curve):
        pts = sorted((c for c in curve if c["method"] == method), key=lambda c: c["budget"])
        x, y = [c["tokens_per_problem"] for c in pts], [c["accuracy"] for c in pts]
        err = [[a - c["ci95_lo"] for a, c in zip(y, pts, strict=True)],
               [c["ci95_hi"] - a for a, c in zip(y, pts, strict=True)]]  # fmt: skip
        ax.errorbar(x, y, yerr=err, label=method, marker="o", capsize=3)
        for c in pts:
            ax.annotate(f"N={c['budget']}", (c["tokens_per_problem"], c["accuracy"]),
                        fontsize=7, textcoords="offset points", xytext=(3, 3))  # fmt: skip
    if curve:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no problems searched (search.problems: 0)", ha="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy (95% CI)")
    fig.tight_layout()
    from rwpipe.artifacts import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Read back by the eval stage


def read_metrics(path: Path) -> dict[str, Any]:
    """The search stage's metrics.json, for the eval report.

    Raises:
        InputError: the file is missing, not JSON, or not a search stage's metrics.
    """
    import json

    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable search metrics file: {exc}") from None
    missing = [k for k in ("problems", "points", "compute_optimal", "ci_method")
               if not isinstance(metrics, dict) or k not in metrics]  # fmt: skip
    if missing:
        raise InputError(f"{path}: not a search stage's metrics.json (no {', '.join(missing)})")
    return metrics


def markdown(metrics: Mapping[str, Any]) -> list[str]:
    """The report.md section: accuracy and tokens of every method at every budget, and the
    compute-optimal method per difficulty level."""
    if not metrics.get("problems"):
        return []
    budgets = sorted({int(n) for by_n in metrics["points"].values() for n in by_n})
    lines = ["", "## Test-time scaling: accuracy [95% CI] and generated tokens per problem", "",
             "| method | " + " | ".join(f"N={n}" for n in budgets) + " |",
             "| --- |" + " --- |" * len(budgets)]  # fmt: skip
    for method, by_n in metrics["points"].items():
        cells = [_cell(by_n[str(n)]) if str(n) in by_n else "" for n in budgets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "### Compute-optimal method by difficulty level", "",
              "| level | " + " | ".join(f"N={n}" for n in budgets) + " |",
              "| --- |" + " --- |" * len(budgets)]  # fmt: skip
    for level, by_n in metrics["compute_optimal"].items():
        cells = [f"{by_n[str(n)]['method']}: {_cell(by_n[str(n)])}, {by_n[str(n)]['problems']} "
                 "problems" if str(n) in by_n else "" for n in budgets]  # fmt: skip
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    if versus := metrics.get("versus_majority"):
        lines += ["", "### Against the majority vote at the same N (paired per problem)", "",
                  "| method | N | difference [95% CI] | problems | tokens / majority's | verdict |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
        for method, by_n in versus.items():
            for n, v in by_n.items():
                ratio = f"{v['tokens_ratio']:.2f}" if v["tokens_ratio"] is not None else "-"
                diff = f"{v['estimate']:+.3f} [{v['ci95_lo']:+.3f}, {v['ci95_hi']:+.3f}]"
                lines.append(f"| {method} | {n} | {diff} | {v['n']} | {ratio} | {v['verdict']} |")
        lines += ["", f"Interval: {metrics.get('versus_majority_ci_method')}."]
    return lines + ["", f"{metrics['problems']} problems; PRM aggregation "
                    f"{metrics.get('aggregation')}; best method: highest accuracy, ties to "
                    f"fewer tokens; 95% CI: {metrics['ci_method']}."]  # fmt: skip


def _cell(p: Mapping[str, Any]) -> str:
    return (f"{p['accuracy']:.3f} [{p['ci95_lo']:.3f}, {p['ci95_hi']:.3f}], "
            f"{p['tokens_per_problem']:.0f} tok")  # fmt: skip
