"""Shared typer argument and option aliases, so every stage spells its paths the same way."""

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_PARAMS = Path("params.yaml")

ParamsOpt = Annotated[
    Path, typer.Option("--params", "-p", help="params.yaml to read the stage's section from.")
]
InFile = Annotated[Path, typer.Argument(help="Input artifact (.arrow).", show_default=False)]
OutFile = Annotated[Path, typer.Argument(help="Output artifact (.arrow).", show_default=False)]
OutDir = Annotated[Path, typer.Argument(help="Output directory.", show_default=False)]
ModelDir = Annotated[Path, typer.Argument(help="Model directory.", show_default=False)]
