"""The one definition of a reasoning "step", used by every stage.

A completion is cut into steps at step boundaries (by default a blank line). Each step keeps
its trailing separator, so `"".join(split_steps(text)) == text` always holds: step i starts at
the character where step i-1 ended, and a "prefix of k steps" is an exact prefix of the
completion. That is what Monte-Carlo labelling and step-level search continue from.
Use `step_text()` for the step without surrounding whitespace (what PRM formats tag).
"""

import re
from typing import Literal

StepSplit = Literal["blank_line", "line", "regex"]

_PATTERNS = {
    "blank_line": r"\n[ \t]*\n\s*",  # one or more blank lines end a step
    "line": r"\n\s*",  # every line break ends a step
}


def split_steps(text: str, how: StepSplit = "blank_line", pattern: str = "") -> list[str]:
    """Cut `text` into steps that re-join to it exactly.

    Args:
        text: a completion.
        how: `blank_line` (default), `line`, or `regex` (then `pattern` is used).
        pattern: for `how="regex"`, a regular expression matching a separator; the match
            stays at the end of the step before it.

    Returns:
        The steps, each with its trailing separator; [] for an empty text. A text that ends
        with a separator has no empty last step.
    """
    if not text:
        return []
    regex = re.compile(pattern if how == "regex" else _PATTERNS[how])
    steps, start = [], 0
    for match in regex.finditer(text):
        if match.end() == match.start():
            continue  # a pattern that can match "" must not produce empty steps
        if match.start() == 0 and start == 0:
            continue  # leading separator: part of the first step
        steps.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        steps.append(text[start:])
    return steps


def join_steps(steps: list[str]) -> str:
    """Inverse of `split_steps`."""
    return "".join(steps)


def step_text(step: str) -> str:
    """A step without its surrounding whitespace."""
    return step.strip()


def prefix(steps: list[str], k: int) -> str:
    """The completion text up to and including step k-1 (the first k steps)."""
    return "".join(steps[:k])
