"""Strict, pure parsing of judge outputs.

Every mode reads the judge's *last* `\\boxed{...}` (the ProcessBench critic protocol and most
judge prompts ask for the final decision boxed; earlier boxes are usually quoted working).
Anything else (no box, an empty box, a value outside the allowed set, an index out of range) is
an abstention: the caller stores None and the raw text, never guesses.
"""

import re

VERDICTS = {
    "correct": "correct", "yes": "correct", "true": "correct", "right": "correct",
    "incorrect": "incorrect", "no": "incorrect", "false": "incorrect", "wrong": "incorrect",
}  # fmt: skip


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j]
        start = text.rfind("\\boxed{", 0, start)  # unbalanced: try an earlier one
    return None


def clean_boxed(value: str) -> str:
    """A boxed value as compared: `\\text{...}` unwrapped, `$`, dots and spaces stripped, lower
    case."""
    value = re.sub(r"\\text\{([^{}]*)\}", r"\1", value)
    return value.strip().strip("$ .").lower()


# A final sentence that states the verdict: "... is correct.", "Verdict: incorrect", "Correct."
# Only the last non-empty line is read, and a negation anywhere in it is an abstention.
SENTENCE = re.compile(r"(?:^|\bis|:)\s*(correct|incorrect)\W*$", re.IGNORECASE)


def parse_verdict(text: str, sentence: bool = False) -> str | None:
    """ "correct" / "incorrect" from the last boxed value, or None (abstain).

    With `sentence` (params `judge.verdict_parse: boxed_or_sentence`, for small judges that do
    not box), a reply with no box may give its verdict as the last line, matched by `SENTENCE`.
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return VERDICTS.get(clean_boxed(boxed))
    if not sentence:
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or re.search(r"\bnot\b|n't\b", lines[-1], re.IGNORECASE):
        return None
    found = SENTENCE.search(lines[-1])
    return None if found is None else found.group(1).lower()


def parse_first_error(text: str, num_steps: int) -> int | None:
    """The 0-based index of the first wrong step (-1: none) from the last boxed value, or None.

    Judges are asked for 0-based indices as in ProcessBench; an index outside
    [-1, num_steps - 1] or a non-integer is an abstention.
    """
    boxed = last_boxed(text)
    if boxed is None:
        return None
    value = clean_boxed(boxed)
    if not re.fullmatch(r"-?\d+", value):
        return None
    index = int(value)
    return index if -1 <= index < num_steps else None


CHOICES = {"a": "A", "b": "B", "solution a": "A", "solution b": "B", "(a)": "A", "(b)": "B"}


def parse_choice(text: str) -> str | None:
    """ "A" or "B" from the last boxed value (pairwise mode), or None (abstain)."""
    boxed = last_boxed(text)
    return None if boxed is None else CHOICES.get(clean_boxed(boxed))
