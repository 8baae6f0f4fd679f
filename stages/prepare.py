"""DVC stage `prepare`: build the problems table (train and eval splits).

rwpipe prepare data/problems.arrow --params params.yaml
"""

import pyarrow as pa

from rwpipe import artifacts
from rwpipe.config import BaseConfig, PrepareConfig, load_section
from stages.options import DEFAULT_PARAMS, OutFile, ParamsOpt
from stages.report import console, print_summary


def prepare(out: OutFile, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Load or generate problems per `prepare` in params.yaml and write OUT."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "prepare", PrepareConfig)
    from rwpipe.problems import build_problems

    rows, stats = build_problems(cfg, base.seed)
    table = pa.Table.from_pylist(rows)
    artifacts.write_artifact(table, out, "problems", section="prepare", config=cfg, stats=stats)
    splits = stats.get("rows_per_split", {})
    print_summary(
        f"prepare -> {out}",
        {
            **{f"rows ({k})": v for k, v in splits.items()},
            "dropped (no gold)": stats.get("dropped", 0),
        },
    )
    c = stats.get("contamination", {})
    if c:
        console.print(
            f"contamination (eval vs train): exact {c.get('exact_count', 0)}, "
            f"13-gram {c.get('ngram_count', 0)} of {c.get('eval_count', 0)} eval problems"
        )
