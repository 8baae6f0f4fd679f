"""Verification critiques: the targets a generative PRM is trained on, and how its verdicts are
read back (ThinkPRM / GenPRM style: a step-by-step check ending in one boxed verdict per step).

A critique walks the solution's steps in order. Each checked step gets a line

    Step k: <comment> The step is \\boxed{correct}.      (or \\boxed{incorrect})

(a templated critique has no comment; a sampled one may reason there)

and the critique ends at the first incorrect step (what follows an error is not judged, as in
ProcessBench and OmegaPRM labels) with

    The first incorrect step is \\boxed{k}.             (k 1-based; \\boxed{-1}: none)

`format_critique(labels)` writes the templated critique of step labels (1 correct, 0
incorrect, None unknown; every step up to the first 0, or all steps, must be known: a
solution whose labels stop short has no complete critique); `parse_critique(text, n)` reads
any critique in this format back into per-step verdicts and the first error, so that
`parse_critique(format_critique(labels), n)` returns the labels up to their first error and
that error. A sampled critique (a judge's, or the trained generative PRM's) is parsed the same
way; a line that does not follow the format ends the parse there (strict: nothing is guessed).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rwpipe.judge.parse import clean_boxed, last_boxed

OPENING = "Let me verify the solution step by step."
# The words before a verdict never depend on it, so that a generative PRM can be scored in one
# teacher-forced pass: P("correct") at each `\\boxed{` with the earlier steps judged correct.
CHECK = "The step is"
VERDICT_WORD = {1: "correct", 0: "incorrect"}
STEP_LINE = re.compile(r"^Step (\d+):(.*)$")


def stated_labels(labels: Sequence[int | None]) -> list[int] | None:
    """The labels a critique states: up to and including the first 0 (all of them without
    one); None when a step before that is unknown."""
    out: list[int] = []
    for y in labels:
        if y is None:
            return None
        out.append(int(y))
        if y == 0:
            break
    return out


def format_critique(labels: Sequence[int | None]) -> str:
    """The templated critique of step labels (see the module docstring).

    Raises:
        ValueError: no steps, or an unknown label before the first incorrect step.
    """
    stated = stated_labels(labels)
    if not stated:
        raise ValueError("a critique needs every step labelled up to the first incorrect one")
    lines = [OPENING]
    for k, y in enumerate(stated, start=1):
        lines.append(f"Step {k}: {CHECK} \\boxed{{{VERDICT_WORD[y]}}}.")
    first = next((k for k, y in enumerate(stated, start=1) if y == 0), -1)
    lines.append(f"The first incorrect step is \\boxed{{{first}}}.")
    return "\n".join(lines)


def parse_critique(text: str, num_steps: int) -> tuple[list[int], int | None]:
    """(verdicts of the steps it judged, in order: 1 / 0; the first error, 0-based, -1 for none,
    None when the critique does not state one consistently).

    Step lines must come in order from 1 and each hold one boxed verdict; the parse stops at the
    first line that does not, at a step past `num_steps`, and after the first incorrect step.
    The closing line must agree with the step verdicts, else the first error is None.
    """
    verdicts: list[int] = []
    closing: int | None = None
    for line in (x.strip() for x in text.splitlines()):
        m = STEP_LINE.match(line)
        if m and not (verdicts and verdicts[-1] == 0):
            if int(m.group(1)) != len(verdicts) + 1 or len(verdicts) >= num_steps:
                break
            word = last_boxed(m.group(2))
            value = {"correct": 1, "incorrect": 0}.get(clean_boxed(word)) if word else None
            if value is None:
                break
            verdicts.append(value)
        elif line.startswith("The first incorrect step is"):
            boxed = last_boxed(line)
            value_text = clean_boxed(boxed) if boxed is not None else ""
            closing = int(value_text) if re.fullmatch(r"-?\d+", value_text) else None
            break
    stated = next((k for k, y in enumerate(verdicts, start=1) if y == 0), -1)
    if closing is None or closing != stated or (stated == -1 and len(verdicts) < num_steps):
        return verdicts, None
    return verdicts, stated - 1 if stated > 0 else -1


def template_rows(labels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Critique targets (the `critiques` artifact's rows, source "template") for every labels
    row whose step labels are complete up to their first error (`stated_labels`); the others
    (outcome-only rows, a budget cut, unknown steps) are left out."""
    out = []
    for r in labels:
        hard = r.get("step_hard") or []
        stated = stated_labels(hard) if len(hard) == len(r["steps"]) else None
        if not stated:
            continue
        first = next((k for k, y in enumerate(stated) if y == 0), -1)
        out.append({
            "problem_id": r["problem_id"], "sample_idx": r["sample_idx"], "split": r["split"],
            "question": r["question"], "prompt": r["prompt"], "steps": list(r["steps"]),
            "critique": format_critique(hard), "step_verdicts": stated, "first_error": first,
            "source": "template",
        })  # fmt: skip
    return out
