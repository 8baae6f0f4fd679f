"""Terminal output shared by the stages: one stderr console and summary tables."""

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

# Progress and summaries go to stderr so that stdout stays clean for piping.
console = Console(stderr=True, soft_wrap=True)


def print_summary(title: str, rows: Mapping[str, Any]) -> None:
    """Print a two-column key/value table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
