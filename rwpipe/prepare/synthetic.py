"""Seeded synthetic arithmetic problems whose gold answers are exact integers.

The task is a ladder of difficulty for small policies (the default SmolLM2-135M-Instruct):
each kind has a fixed level (1 = easiest), so reward models see both solvable and hard items.

| kind  | question (operand ranges)                                              | level |
| ----- | ---------------------------------------------------------------------- | ----- |
| add   | What is a + b?  (a, b in 2..49)                                        | 1     |
| sub   | What is a - b?  (a in 11..99, b < a)                                   | 1     |
| mul   | What is a * b?  (a in 2..25, b in 2..9)                                | 2     |
| add3  | What is a + b + c?  (each in 2..29)                                    | 2     |
| word  | one-line story with one +, - or *: "Mia has 12 shells and gets 7 more. | 3     |
|       | How many shells does Mia have now?"                                    |       |
| chain | a groups of b things, gets c more (a * b + c), then maybe gives d away | 4 / 5 |
|       | (a * b + c - d): two or three steps                                    |       |

Every answer is a positive integer string, and every solution is one step per operation, steps
separated by a blank line, the last step stating `\\boxed{answer}`. Distinct questions per kind:
add 2304, sub 4717, mul 192, add3 21952, word and chain many more; asking for more raises
ValueError.

Measured accuracy of SmolLM2-135M-Instruct (float32 transformers on CPU, its chat template,
temperature 0.7, max_new_tokens 128, math-verify on the whole completion; per kind the 8
questions of `generate_synthetic(8, 0, (kind,), "eval")` x 4 samples = 32 completions, so one
standard error is up to 8 points):

| add  | sub  | mul  | add3 | word | chain |
| ---- | ---- | ---- | ---- | ---- | ----- |
| 0.22 | 0.09 | 0.34 | 0.06 | 0.19 | 0.03  |

Appending "Give the final answer as a number." to the question did not help on the same
questions (add3 0.06 -> 0.03, word 0.19 -> 0.13; the model tends to ramble about "the answer"),
so questions carry no suffix.
"""

import hashlib
import random

from rwpipe.runtime import stable_seed

KINDS = ("add", "sub", "mul", "add3", "word", "chain")
# Candidates tried per row before giving up: a kind's question space is finite.
_MAX_TRIES = 1000

_NAMES = (
    "Ava", "Ben", "Mia", "Leo", "Zoe", "Sam", "Noah", "Lily", "Omar", "Ruth",
    "Ivan", "Nora", "Eli", "Maya", "Tom", "Aria", "Raj", "Emma", "Kai", "Lucy",
)  # fmt: skip
_THINGS = (
    "apples", "pencils", "stickers", "marbles", "cookies", "books", "coins", "shells",
    "cards", "stamps", "eggs", "flowers",
)  # fmt: skip
_GROUPS = ("boxes", "bags", "packs", "jars", "baskets", "rows")

# An item before it becomes a row: question, worked steps, integer answer, level.
Item = tuple[str, list[str], int, int]


def generate_synthetic(
    n: int,
    seed: int,
    kinds: tuple[str, ...],
    split: str,
    exclude: frozenset[str] = frozenset(),
) -> list[dict]:
    """Generate `n` distinct synthetic problems, kinds mixed round-robin.

    Rows depend only on (`n`, `seed`, `kinds`, `exclude`): the same arguments give identical
    rows in every process, and a smaller `n` gives a prefix of a larger one.

    Args:
        n: number of rows.
        seed: seed of the random stream (use a different one per split).
        kinds: task families from `KINDS`, cycled in this order.
        split: the `split` value written into every row (train | eval).
        exclude: questions that must not be generated (e.g. the train questions, for eval).

    Returns:
        Rows of the problems schema: problem_id (`syn-<kind>-<hash>`), split, source
        ("synthetic"), question, answer, solution, category (the kind), level.

    Raises:
        ValueError: an unknown kind, no kinds, or a kind that ran out of distinct questions.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown synthetic kinds {unknown} (known: {', '.join(KINDS)})")
    rng = random.Random(stable_seed("synthetic", seed))
    seen = set(exclude)
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        question, steps, answer, level = _fresh_item(kind, rng, seen)
        seen.add(question)
        rows.append(_row(kind, question, steps, answer, level, split))
    return rows


def _fresh_item(kind: str, rng: random.Random, seen: set[str]) -> Item:
    for _ in range(_MAX_TRIES):
        item = _make_item(kind, rng)
        if item[0] not in seen:
            return item
    raise ValueError(
        f"synthetic kind {kind!r}: no new question in {_MAX_TRIES} tries (its questions are "
        "used up; ask for fewer rows or add kinds)"
    )


def _row(kind: str, question: str, steps: list[str], answer: int, level: int, split: str) -> dict:
    digest = hashlib.blake2b(question.encode(), digest_size=6).hexdigest()
    steps = [*steps, f"The final answer is \\boxed{{{answer}}}."]
    return {
        "problem_id": f"syn-{kind}-{digest}",
        "split": split,
        "source": "synthetic",
        "question": question,
        "answer": str(answer),
        "solution": "\n\n".join(steps),
        "category": kind,
        "level": level,
    }


def _make_item(kind: str, rng: random.Random) -> Item:
    match kind:
        case "add":
            return _make_add(rng)
        case "sub":
            return _make_sub(rng)
        case "mul":
            return _make_mul(rng)
        case "add3":
            return _make_add3(rng)
        case "word":
            return _make_word(rng)
        case "chain":
            return _make_chain(rng)
    raise ValueError(f"unknown synthetic kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# Bare arithmetic: one or two operations on 1-2 digit numbers.


def _make_add(rng: random.Random) -> Item:
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    return f"What is {a} + {b}?", [f"{a} + {b} = {a + b}."], a + b, 1


def _make_sub(rng: random.Random) -> Item:
    a = rng.randint(11, 99)
    b = rng.randint(2, a - 1)  # answers stay positive
    return f"What is {a} - {b}?", [f"{a} - {b} = {a - b}."], a - b, 1


def _make_mul(rng: random.Random) -> Item:
    a, b = rng.randint(2, 25), rng.randint(2, 9)
    return f"What is {a} * {b}?", [f"{a} * {b} = {a * b}."], a * b, 2


def _make_add3(rng: random.Random) -> Item:
    a, b, c = rng.randint(2, 29), rng.randint(2, 29), rng.randint(2, 29)
    steps = [f"First, {a} + {b} = {a + b}.", f"Then, {a + b} + {c} = {a + b + c}."]
    return f"What is {a} + {b} + {c}?", steps, a + b + c, 2


# ----------------------------------------------------------------------------------------------
# Word problems: one operation (word) or two to three chained operations (chain).


def _make_word(rng: random.Random) -> Item:
    name, things, group = rng.choice(_NAMES), rng.choice(_THINGS), rng.choice(_GROUPS)
    op = rng.choice(("add", "sub", "mul"))
    if op == "add":
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        text = f"{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?"
        return text, [f"{name} has {a} + {b} = {a + b} {things}."], a + b, 3
    if op == "sub":
        a = rng.randint(11, 60)
        b = rng.randint(2, a - 1)
        text = f"{name} has {a} {things} and gives away {b}. How many {things} are left?"
        return text, [f"{name} has {a} - {b} = {a - b} {things} left."], a - b, 3
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    text = f"{name} has {a} {group} with {b} {things} in each. How many {things} is that in total?"
    return text, [f"{name} has {a} * {b} = {a * b} {things}."], a * b, 3


def _make_chain(rng: random.Random) -> Item:
    name, things, group = rng.choice(_NAMES), rng.choice(_THINGS), rng.choice(_GROUPS)
    a, b, c = rng.randint(2, 9), rng.randint(2, 12), rng.randint(2, 30)
    start = f"{name} has {a} {group} with {b} {things} in each"
    steps = [f"{name} starts with {a} * {b} = {a * b} {things}."]
    total = a * b + c
    steps.append(f"After getting {c} more, {name} has {a * b} + {c} = {total} {things}.")
    if rng.random() < 0.5:  # two operations
        text = f"{start} and gets {c} more {things}. How many {things} does {name} have now?"
        return text, steps, total, 4
    d = rng.randint(2, total - 1)  # three operations; the answer stays positive
    steps.append(f"After giving away {d}, {name} has {total} - {d} = {total - d} {things}.")
    text = (
        f"{start}, gets {c} more {things} and then gives away {d}. "
        f"How many {things} does {name} have now?"
    )
    return text, steps, total - d, 5
