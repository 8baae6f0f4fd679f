"""RL curves and metrics: the run's summary (`summarize`) and the files DVC reads
(`write_report`: metrics.json, curves.csv for plots, curves.png)."""

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwpipe.artifacts import write_json, write_text

PANELS = ("reward", "accuracy", "length", "kl", "entropy", "clip_fraction", "seconds", "rss_gib")
CURVES = ("reward", "accuracy", "length", "steps_per_solution", "kl", "entropy", "clip_fraction",
          "orm_score", "prm_step_score", "implicit_step_reward", "seconds", "sync_seconds",
          "generate_seconds", "rss_gib")  # fmt: skip


def summarize(state: Any, window: int = 3) -> dict[str, Any]:
    """First and last steps' means (over `window` steps) of the main curves, and totals, of an
    `RLState`."""
    hist = state.history
    out: dict[str, Any] = {"steps": state.step, "generated_tokens": state.tokens,
                           "seconds": round(state.seconds, 1)}  # fmt: skip
    if not hist:
        return out
    w = max(1, min(window, len(hist) // 2 or 1))
    for key in CURVES:
        first = [h[key] for h in hist[:w] if key in h]
        last = [h[key] for h in hist[-w:] if key in h]
        if first and last:
            out[f"{key}_first"] = round(float(np.mean(first)), 4)
            out[f"{key}_last"] = round(float(np.mean(last)), 4)
    if any("rss_gib" in h for h in hist):
        out["rss_gib_max"] = max(h.get("rss_gib", 0.0) for h in hist)
    gen = sum(h.get("generate_seconds", 0.0) for h in hist)
    out["generate_fraction"] = round(gen / max(state.seconds, 1e-9), 3)
    return out


def write_report(directory: Path, history: Sequence[dict[str, Any]], metrics: dict) -> None:
    """metrics.json, curves.csv (one row per step) and curves.png in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(metrics, directory / "metrics.json")
    buf = io.StringIO()
    fields = ["step"] + sorted({k for r in history for k in r} - {"step"})
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    write_text(buf.getvalue(), directory / "curves.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(14, 5.5))
    steps = [r["step"] for r in history]
    for ax, key in zip(axes.flat, PANELS, strict=True):
        ax.plot(steps, [r.get(key, float("nan")) for r in history], marker=".")
        ax.set_title({"seconds": "step seconds", "rss_gib": "RSS (GiB)"}.get(key, key))
        ax.set_xlabel("RL step")
    fig.tight_layout()
    tmp = directory / "curves.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(directory / "curves.png")
