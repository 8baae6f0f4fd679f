"""Progress bars for long loops: items done, throughput (items/s and tokens/s) and ETA.

Output goes to stderr through rich; when stderr is not a terminal (DVC logs, CI) rich prints
nothing transient, and the stage prints its summary at the end instead.
"""

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Items/s and tokens/s since the start of the task."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        done = task.completed - task.fields.get("resumed", 0)
        rate = f"{done / elapsed:.2f} {self.unit}/s"
        tokens = task.fields.get("tokens", 0)
        if tokens:
            rate += f"  {tokens / elapsed:,.0f} tok/s"
        return Text(rate, style="cyan")


@contextlib.contextmanager
def progress_bar(
    total: int, description: str, unit: str = "items", *, completed: int = 0
) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields `advance(items, tokens)`.

    Args:
        total: items to do in all (including `completed`).
        description: shown left of the bar.
        unit: what an item is ("prompts", "labels").
        completed: items already done (a resumed run), shown as done from the start.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=False) as progress:
        # A resumed run starts at `completed`; rates count only this run's work.
        task = progress.add_task(
            description, total=total, completed=completed, tokens=0, resumed=completed
        )
        tokens_done = [0]

        def advance(items: int = 0, tokens: int = 0) -> None:
            tokens_done[0] += tokens
            progress.update(task, advance=items, tokens=tokens_done[0])

        yield advance


class Stopwatch:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
