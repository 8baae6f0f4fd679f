"""`rwpipe probe`: the master-key robustness probe ("One Token to Fool LLM-as-a-Judge") of an
LLM judge and of the rule verifier, on the eval problems.

rwpipe probe data/problems.arrow data/models/smollm2-135m-instruct data/probe.json
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe.config import load_section
from stages.options import DEFAULT_PARAMS, InFile, ParamsOpt
from stages.report import console

JudgeModel = Annotated[
    Path,
    typer.Argument(help="Judge model directory (ignored when annotate.judge.base_url is set).",
                   show_default=False),
]  # fmt: skip
OutJson = Annotated[Path, typer.Argument(help="Where the rates go (.json).", show_default=False)]


def probe(
    problems: InFile, judge_model: JudgeModel, out: OutJson, *,
    max_problems: Annotated[int, typer.Option(min=1, help="Eval problems probed.")] = 32,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """False-positive rate per master key ("", ":", "Solution", ...) of the judge in
    `annotate.judge` (verdict mode, with the reference answer) and of the rule verifier."""
    from rich.table import Table

    from rwpipe.probe import MASTER_KEYS, run

    got = run(load_section(params, "annotate"), load_section(params, "base"), problems=problems,
              judge_model=judge_model, out=out, max_problems=max_problems)  # fmt: skip
    view = Table(title=f"master-key false positives over {got['problems']} problems -> {out}")
    for col in ("key", "response", "LLM judge FP", "judge abstained", "rule verifier FP"):
        view.add_column(col)
    for key, text in MASTER_KEYS.items():
        view.add_row(key, repr(text)[:30], f"{got['judge_false_positive'][key]:.3f}",
                     f"{got['judge_abstained'][key]:.3f}",
                     f"{got['rule_false_positive'][key]:.3f}")  # fmt: skip
    console.print(view)
