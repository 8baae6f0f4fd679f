"""DVC stage `inputs`: digests of the local files params.yaml names (always run, cheap).

rwpipe inputs data/inputs --params params.yaml
"""

from stages.options import DEFAULT_PARAMS, OutDir, ParamsOpt
from stages.report import print_summary


def inputs(out_dir: OutDir, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Hash the files that prepare.train/eval, eval.processbench/threshold_tune and a local
    model.source name into OUT_DIR/<stage>.json, rewriting a JSON only when it changes."""
    from rwpipe.inputs import write_inputs

    changed = write_inputs(out_dir, params)
    rows = {f"{out_dir}/{s}.json": "changed" if c else "unchanged" for s, c in changed.items()}
    print_summary(f"inputs -> {out_dir}", rows)
