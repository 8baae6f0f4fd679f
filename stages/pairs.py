"""DVC stage `pairs`: (correct, incorrect) preference pairs for the ORM from labels.arrow.

rwpipe pairs data/labels.arrow data/pairs.arrow
"""

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, InFile, OutFile, ParamsOpt
from stages.report import print_summary


def pairs(labels: InFile, out: OutFile, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Pair a correct and an incorrect rollout of each problem (optional soft-label margin)."""
    from rwpipe.pairs import run

    stats = run(load_section(params, "pairs"), load_section(params, "base"), labels=labels, out=out)
    print_summary(f"pairs -> {out}", stats)
