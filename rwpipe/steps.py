"""The one definition of a reasoning "step", used by every stage.

A completion is cut into steps at step boundaries (by default a blank line). Each step keeps
its trailing separator, so `"".join(split_steps(text)) == text` always holds: step i starts at
the character where step i-1 ended, and a "prefix of k steps" is an exact prefix of the
completion. That is what Monte-Carlo labelling and step-level search continue from.
Use `step_text()` for the step without surrounding whitespace (what PRM formats tag).

`StepRule` bundles the rule a run uses (`base.step_split`, `base.step_pattern`) with every
operation the stages need: split, join, prefix, the separator that joins steps written
without one (ProcessBench items), the stop strings that end one step while generating, and
`first_step`, which cuts one generated step out of a longer continuation (the `regex` mode has
no stop string, so its step ends where the pattern first matches).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

StepSplit = Literal["blank_line", "line", "regex"]

_PATTERNS = {
    "blank_line": r"\n[ \t]*\n\s*",  # one or more blank lines end a step
    "line": r"\n\s*",  # every line break ends a step
}
_SEPARATORS = {"blank_line": "\n\n", "line": "\n"}


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


def join_steps(steps: Sequence[str]) -> str:
    """Inverse of `split_steps`."""
    return "".join(steps)


def step_text(step: str) -> str:
    """A step without its surrounding whitespace."""
    return step.strip()


def prefix(steps: Sequence[str], k: int) -> str:
    """The completion text up to and including step k-1 (the first k steps)."""
    return "".join(steps[:k])


@dataclass(frozen=True)
class StepRule:
    """How completions are cut into steps (`base.step_split`, `base.step_pattern`)."""

    how: StepSplit = "blank_line"
    pattern: str = ""

    def __post_init__(self) -> None:
        if self.how not in ("blank_line", "line", "regex"):
            raise ValueError(f"unknown step split {self.how!r}; expected blank_line, line, regex")
        if self.how == "regex":
            if not self.pattern:
                raise ValueError("step_split regex needs a non-empty step_pattern")
            re.compile(self.pattern)

    @classmethod
    def from_config(cls, base: object) -> "StepRule":
        """The rule of a `base` params section."""
        return cls(base.step_split, base.step_pattern)  # type: ignore[attr-defined]

    def split(self, text: str) -> list[str]:
        return split_steps(text, self.how, self.pattern)

    @staticmethod
    def join(steps: Sequence[str]) -> str:
        return join_steps(steps)

    @staticmethod
    def prefix(steps: Sequence[str], k: int) -> str:
        return prefix(steps, k)

    @property
    def separator(self) -> str:
        """What ends a step written without one: blank line, line break, or, for `regex`, the
        pattern itself when it is a plain literal (else a line break)."""
        if self.how == "regex":
            literal = _literal(self.pattern)
            return literal if literal else "\n"
        return _SEPARATORS[self.how]

    def join_bare(self, steps: Sequence[str]) -> list[str]:
        """Steps written without separators (ProcessBench, judges) as steps of this rule:
        every step but the last gets `separator`, so `split(join(...))` finds them again
        when no step contains a separator itself."""
        return [s + self.separator for s in steps[:-1]] + list(steps[-1:])

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings that end generation at the first step boundary. Empty for a `regex`
        pattern that is not a literal: generate on, then cut with `first_step`."""
        if self.how == "regex":
            literal = _literal(self.pattern)
            return (literal,) if literal else ()
        return (_SEPARATORS[self.how],)

    def first_step(self, text: str, stopped_at_separator: bool) -> tuple[str, bool]:
        """The next step in a continuation `text`, and whether it ended at a boundary.

        Args:
            text: what the engine generated after a step boundary.
            stopped_at_separator: the engine stopped on one of `stop` (its text then lacks it).

        Returns:
            (step, complete): the step with its trailing separator when `complete`; else the
            whole text (the solution ended, or the token budget ran out, mid-step).
        """
        if stopped_at_separator:
            return text + self.stop[0], True
        steps = self.split(text)
        if len(steps) > 1:
            return steps[0], True
        return text, False


def _literal(pattern: str) -> str | None:
    """The one string a regex matches when it is a plain literal (no special characters; the
    escapes \\n, \\t and an escaped punctuation character allowed), else None."""
    if re.search(r"(?<!\\)[.^$*+?{}\[\]|()]", pattern):
        return None
    escapes = {"n": "\n", "t": "\t"}
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            c = pattern[i + 1]
            if c.isalnum() and c not in escapes:
                return None  # \d, \s, \b ...: a class, not a literal
            out.append(escapes.get(c, c))
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    text = "".join(out)
    return text if text and re.fullmatch(pattern, text) else None


@dataclass(frozen=True)
class Solution:
    """One solution as every stage sees it: the problem, the chat prompt the policy saw and its
    steps (`split` of the completion), plus what labelling knows of it. Scorers read question,
    prompt and steps; annotate's step-label methods also read the rest."""

    question: str
    prompt: str  # the chat-templated prompt the policy saw
    steps: Sequence[str]
    problem_id: str = ""
    index: int = 0  # the caller's row index; keys annotate's cost accounting
    gold: str | None = None
    outcome: int | None = None  # 1 correct, 0 incorrect, None unknown
    finished: bool = True  # ended by itself (EOS or a stop string), not cut at max_new_tokens

    @classmethod
    def from_row(cls, row: dict, index: int = 0, **known: int | None) -> "Solution":
        """From a rollouts or labels artifact row; `outcome=` overrides the row's."""
        return cls(
            question=row["question"], prompt=row["prompt"], steps=list(row["steps"]),
            problem_id=row["problem_id"], index=index, gold=row.get("gold"),
            outcome=known.get("outcome", row.get("outcome")),
            finished=row.get("finish_reason", "stop") == "stop",
        )  # fmt: skip

    def prefix(self, t: int) -> str:
        """The text of steps 0..t-1 (t steps)."""
        return prefix(self.steps, t)
