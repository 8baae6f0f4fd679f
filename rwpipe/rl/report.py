"""RL curves and metrics as files DVC reads: metrics.json, curves.csv (plots), curves.png."""

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rwpipe.artifacts import write_json, write_text

PANELS = ("reward", "accuracy", "length", "kl", "entropy", "clip_fraction")


def write_report(directory: Path, history: Sequence[dict[str, Any]], metrics: dict) -> None:
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

    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5))
    steps = [r["step"] for r in history]
    for ax, key in zip(axes.flat, PANELS, strict=True):
        ax.plot(steps, [r.get(key, float("nan")) for r in history], marker=".")
        ax.set_title(key)
        ax.set_xlabel("RL step")
    fig.tight_layout()
    tmp = directory / "curves.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(directory / "curves.png")
