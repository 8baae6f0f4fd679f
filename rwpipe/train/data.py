"""Training examples for reward models, built from labels.arrow, and length-grouped batches.

One function, `encode_solution`, turns (prompt, steps) into token ids and the index of each
step's last token; training and scoring both use it, so a PRM reads its step scores at the
positions it was trained on.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rwpipe.pairs import draw_pairs
from rwpipe.runtime import stable_seed


@dataclass
class Encoded:
    """A tokenised solution: ids, the prompt's length in tokens, each kept step's last token."""

    input_ids: list[int]
    prompt_len: int
    step_ends: list[int]


def encode_solution(
    tokenizer: Any, prompt: str, steps: Sequence[str], step_tag: str = "", max_length: int = 0
) -> Encoded:
    """Tokenise prompt + steps piece by piece, appending `step_tag` after each step.

    Each piece is encoded on its own (no special tokens added: the prompt already holds the
    chat template's), so step boundaries are token boundaries. With `max_length`, the steps
    that do not fit whole are dropped (and with them their labels).
    """
    ids = list(tokenizer.encode(prompt, add_special_tokens=False))
    prompt_len, ends = len(ids), []
    for step in steps:
        piece = tokenizer.encode(step + step_tag, add_special_tokens=False)
        if not piece or (max_length and len(ids) + len(piece) > max_length):
            break
        ids.extend(piece)
        ends.append(len(ids) - 1)
    if max_length and len(ids) > max_length:  # a prompt alone over the limit: keep its tail
        ids = ids[-max_length:]
        prompt_len, ends = min(prompt_len, max_length), []
    return Encoded(ids, prompt_len, ends)


@dataclass
class Example:
    """One training unit: a tokenised solution and its labels."""

    input_ids: list[int]
    prompt_len: int
    step_ends: list[int] = field(default_factory=list)
    step_targets: list[float | None] = field(default_factory=list)  # per kept step
    outcome: float | None = None
    group: str = ""  # the problem id: pairs and eval splits keep a problem together
    key: tuple = ()

    def __len__(self) -> int:
        return len(self.input_ids)


def prm_examples(
    rows: Sequence[dict], tokenizer: Any, *, soft: bool, step_tag: str, max_length: int
) -> list[Example]:
    """Step-labelled solutions from label rows; rows with no step label are skipped.

    soft: train on MC values (`step_soft`, falling back to the hard label where a method gave
    none, e.g. inferred-correct solutions); else on `step_hard`.
    """
    out = []
    for r in rows:
        targets = []
        for hard, value in zip(r["step_hard"], r["step_soft"], strict=True):
            target = value if soft and value is not None else hard
            targets.append(None if target is None else float(target))
        if all(t is None for t in targets):
            continue
        enc = encode_solution(tokenizer, r["prompt"], r["steps"], step_tag, max_length)
        kept = targets[: len(enc.step_ends)]
        if all(t is None for t in kept):
            continue
        out.append(
            Example(
                enc.input_ids, enc.prompt_len, enc.step_ends, kept, r["outcome"],
                r["problem_id"], (r["problem_id"], r["sample_idx"]),
            )
        )  # fmt: skip
    return out


def critique_examples(rows: Sequence[dict], tokenizer: Any, *, max_length: int) -> list[Example]:
    """Generative-PRM examples: the verification request and its critique, step targets at the
    verdict positions. From labels rows (each labelled up to its first incorrect step gets the
    templated critique) or from critiques rows (`rwpipe critiques`): a templated one is encoded
    the same way; a sampled one (source "judge", free text before each verdict) is trained on
    as written, with no verdict positions to evaluate at."""
    from rwpipe.backends import apply_chat_template
    from rwpipe.critique import encode_critique, row_stated_labels, verification_request

    out = []
    for r in rows:
        key = (r["problem_id"], r["sample_idx"])
        if r.get("source") == "judge":
            prompt = apply_chat_template(tokenizer, verification_request(r["question"], r["steps"]))
            ids = list(tokenizer.encode(prompt, add_special_tokens=False))
            target = tokenizer.encode(r["critique"], add_special_tokens=False)
            eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
            full = ids + target + eos
            if not max_length or len(full) <= max_length:
                out.append(Example(full, len(ids), [], [], None, r["problem_id"], key))
            continue
        stated = list(r["step_verdicts"]) if "step_verdicts" in r else row_stated_labels(r)
        if not stated:
            continue
        ids, prompt_len, ends = encode_critique(tokenizer, r["question"], r["steps"], stated,
                                                max_length)  # fmt: skip
        if not ends:
            continue
        targets = [float(y) for y in stated[: len(ends)]]
        out.append(Example(ids, prompt_len, ends, targets, r.get("outcome"), r["problem_id"], key))
    return out


def solution_example(tokenizer: Any, prompt: str, steps: Sequence[str], *, max_length: int,
                     outcome: float | None, group: str, key: tuple) -> Example:  # fmt: skip
    """A whole solution, cut from the left to `max_length` (the end, which holds the answer
    an outcome model reads, is kept)."""
    enc = encode_solution(tokenizer, prompt, steps, "", 0)
    ids = enc.input_ids[-max_length:] if max_length else enc.input_ids
    prompt_len = max(0, enc.prompt_len - (len(enc.input_ids) - len(ids)))
    return Example(ids, prompt_len, [], [], outcome, group, key)


def outcome_examples(rows: Sequence[dict], tokenizer: Any, *, max_length: int) -> list[Example]:
    """Whole solutions with a known outcome (correct 1 / incorrect 0)."""
    return [
        solution_example(tokenizer, r["prompt"], r["steps"], max_length=max_length,
                         outcome=float(r["outcome"]), group=r["problem_id"],
                         key=(r["problem_id"], r["sample_idx"]))
        for r in rows if r["outcome"] is not None
    ]  # fmt: skip


def pair_items(rows: Sequence[dict], tokenizer: Any, *, max_length: int) -> list[tuple]:
    """(chosen, rejected, margin or None) training items from pairs-artifact rows."""
    out = []
    for p in rows:
        pid = p["problem_id"]
        chosen, rejected = (
            solution_example(tokenizer, p["prompt"], p[f"{side}_steps"], max_length=max_length,
                             outcome=float(side == "chosen"), group=pid,
                             key=(pid, p[f"{side}_idx"]))
            for side in ("chosen", "rejected")
        )  # fmt: skip
        out.append((chosen, rejected, p["margin"]))
    return out


def preference_pairs(
    examples: Sequence[Example], per_problem: int, seed: int
) -> list[tuple[Example, Example]]:
    """(chosen, rejected) pairs: a correct and an incorrect solution of the same problem, drawn
    by `rwpipe.pairs.draw_pairs` (up to `per_problem` per problem, a seed of their own)."""
    return draw_pairs(examples, problem=lambda e: e.group, outcome=lambda e: e.outcome,
                      per_problem=per_problem, seed=seed)  # fmt: skip


def split_by_group(
    items: Sequence[Any], groups: Sequence[str], eval_fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """Hold out about `eval_fraction` of the groups (problems), chosen by a seeded hash."""
    held = {
        g for g in set(groups) if stable_seed(seed, "heldout", g) % 10_000 < eval_fraction * 10_000
    }
    train = [x for x, g in zip(items, groups, strict=True) if g not in held]
    test = [x for x, g in zip(items, groups, strict=True) if g in held]
    return train, test


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group: int = 16
) -> list[list[int]]:
    """Indices of each batch for one epoch: shuffled, then sorted by length inside mega-batches
    of `group` batches, so a batch holds similar lengths and padding stays small.

    Depends only on (lengths, batch_size, seed, epoch): a resumed run sees the same batches.
    """
    rng = random.Random(stable_seed(seed, "batches", epoch))
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * group
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, multiple: int = 1, limit: int | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """Right-pad to the longest sequence, rounded up to a multiple of `multiple` but never
    past `limit` (the model's position limit): (input_ids, attention_mask).

    The rounding only adds pads; where it would pass the limit (a limit that is not a multiple
    of `multiple`) the width stops at the limit, so padding never overruns the model."""
    longest = max(len(s) for s in sequences)
    width = -(-longest // multiple) * multiple
    if limit is not None:
        width = max(longest, min(width, limit))
    ids = [list(s) + [pad_id] * (width - len(s)) for s in sequences]
    mask = [[1] * len(s) + [0] * (width - len(s)) for s in sequences]
    return ids, mask
