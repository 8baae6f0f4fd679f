"""DVC stage `pairs`: (correct, incorrect) preference pairs for the ORM from labels.arrow.

rwpipe pairs data/labels.arrow data/pairs.arrow
"""

from rwpipe import artifacts
from rwpipe.config import BaseConfig, PairsConfig, load_section
from rwpipe.errors import InputError
from stages.options import DEFAULT_PARAMS, InFile, OutFile, ParamsOpt
from stages.report import print_summary


def pairs(labels: InFile, out: OutFile, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Pair a correct and an incorrect rollout of each problem (optional soft-label margin)."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "pairs", PairsConfig)
    from rwpipe.pairs import build_pairs

    rows = [r for r in artifacts.read_artifact(labels, "labels").to_pylist()
            if r["split"] in cfg.splits]  # fmt: skip
    if not rows:
        raise InputError(f"{labels}: no labelled rollouts in split(s) {', '.join(cfg.splits)}")
    got = build_pairs(rows, per_problem=cfg.per_problem, seed=base.seed, margin=cfg.margin,
                      margin_scale=cfg.margin_scale)  # fmt: skip
    if not got:
        raise InputError(f"{labels}: no problem has both a correct and an incorrect rollout")
    import pyarrow as pa

    stats = {"pairs": len(got), "problems": len({p["problem_id"] for p in got}),
             "with_margin": sum(p["margin"] is not None for p in got)}  # fmt: skip
    artifacts.write_artifact(pa.Table.from_pylist(got), out, "pairs", section="pairs",
                             config=cfg, stats=stats)  # fmt: skip
    print_summary(f"pairs -> {out}", stats)
