"""DVC stage `prepare`: build the problems table (train and eval splits).

rwpipe prepare data/problems.arrow --params params.yaml
"""

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, OutFile, ParamsOpt
from stages.report import console, print_summary


def prepare(out: OutFile, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Load or generate problems per `prepare` in params.yaml and write OUT."""
    from rwpipe.prepare import run

    stats = run(load_section(params, "prepare"), load_section(params, "base"), out=out)
    summary = {f"{split} rows": stats[split]["rows"] for split in ("train", "eval")}
    summary |= {f"dropped (no gold) from {spec}": n for spec, n in stats["dropped"].items() if n}
    print_summary(f"prepare -> {out}", summary)
    c = stats["contamination"]
    console.print(
        f"contamination, eval vs train: {c['exact']['count']} exact and {c['ngram']['count']} "
        f"{c['n']}-gram matches among {c['eval_total']} eval problems"
    )
