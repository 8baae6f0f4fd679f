"""Training curves and metrics as files DVC reads: metrics.json, loss.csv (plots), loss.png."""

import csv
import io
from pathlib import Path
from typing import Any

from rwpipe.artifacts import write_json, write_text
from rwpipe.train.loop import TrainState


def write_report(directory: Path, state: TrainState, metrics: dict[str, Any]) -> None:
    """metrics.json (DVC metrics), loss.csv and evals.csv (DVC plots), loss.png."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(metrics, directory / "metrics.json")
    for name, records in (("loss.csv", state.history), ("evals.csv", state.evals)):
        if records:
            buf = io.StringIO()
            fields = sorted({k for r in records for k in r})
            writer = csv.DictWriter(buf, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)
            write_text(buf.getvalue(), directory / name)
    if state.history:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in state.history], [r["loss"] for r in state.history])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{metrics.get('kind', '')} ({metrics.get('objective', '')})")
        fig.tight_layout()
        fig.savefig(directory / "loss.png", dpi=120)
        plt.close(fig)
