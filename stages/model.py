"""DVC stage `model`: materialise the policy as a transformers directory.

rwpipe model data/models/smollm2-135m-instruct --params params.yaml
"""

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, OutDir, ParamsOpt
from stages.report import console


def model(out_dir: OutDir, *, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Convert or copy `model.source` (alias, local directory or hub id) into OUT_DIR."""
    from rwpipe.model import run

    cfg = load_section(params, "model")
    info = run(cfg, out=out_dir)
    n = info.get("num_parameters")
    size = f"{n:,} parameters" if isinstance(n, int) else "?"
    console.print(f"[bold green]model[/] {cfg.source} -> {out_dir} ({size}, {info.get('dtype')})")
