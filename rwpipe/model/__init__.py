"""Model directories (stage `model`): materialising `model.source` as a transformers directory
(`materialize.py`), and the tiny random test models (`tiny.py`)."""

from pathlib import Path
from typing import Any


def run(cfg: Any, *, out: Path) -> dict[str, Any]:
    """Stage `model`: convert or copy `cfg.source` into OUT (atomically); what was built."""
    from rwpipe.model.materialize import materialize_model  # lazy: pulls in torch

    return materialize_model(cfg, out)
