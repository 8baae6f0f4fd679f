"""DVC stage `search`: test-time scaling on one budget axis. Best-of-N and the PRM-weighted
vote over the rollouts, beam search, DVTS and particle filtering at every `search.budgets` N on
the same problems: per-problem records, accuracy against generated tokens, and the
compute-optimal method per difficulty level (`rwpipe.eval.budget`).

rwpipe search data/problems.arrow data/rollouts.arrow data/models/smollm2-135m-instruct \
    data/models/prm data/search
"""

from rwpipe.config import BaseConfig, SearchStageConfig, load_section
from stages.options import DEFAULT_PARAMS, InFile, ModelDir, OutDir, ParamsOpt
from stages.report import print_summary


def search(
    problems: InFile, rollouts: InFile, policy: ModelDir, prm: ModelDir, out: OutDir, *,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """Run every test-time method at every budget; write records, metrics and the curve."""
    from rwpipe.eval.budget import run

    cfg = load_section(params, "search", SearchStageConfig)
    base = load_section(params, "base", BaseConfig)
    stats = run(cfg, base, problems=problems, rollouts=rollouts, policy=policy, prm=prm, out=out)
    print_summary(f"search -> {out}", stats)
