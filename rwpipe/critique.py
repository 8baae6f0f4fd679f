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


def row_stated_labels(r: Mapping[str, Any]) -> list[int] | None:
    """A labels row's stated labels (`stated_labels`), None when its steps are not all
    labelled up to the first error (outcome-only rows, a budget cut, unknown steps)."""
    hard = r.get("step_hard") or []
    return stated_labels(hard) if len(hard) == len(r["steps"]) else None


def _critique_row(r: Mapping[str, Any], critique: str, stated: list[int], source: str) -> dict:
    first = next((k for k, y in enumerate(stated) if y == 0), -1)
    return {
        "problem_id": r["problem_id"], "sample_idx": r["sample_idx"], "split": r["split"],
        "question": r["question"], "prompt": r["prompt"], "steps": list(r["steps"]),
        "critique": critique, "step_verdicts": stated, "first_error": first, "source": source,
    }  # fmt: skip


def template_rows(labels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Critique targets (the `critiques` artifact's rows, source "template") for every labels
    row whose step labels are complete up to their first error (`stated_labels`); the others
    (outcome-only rows, a budget cut, unknown steps) are left out."""
    return [_critique_row(r, format_critique(stated), stated, "template")
            for r in labels if (stated := row_stated_labels(r))]  # fmt: skip


# -- the generative PRM's sequences ---------------------------------------------------------------
TASK = (
    "Verify the solution below step by step. Judge each step in order, correct or incorrect, up "
    "to the first incorrect one, then name the first incorrect step (-1 if none).\n\n"
    "Problem: {question}\n\nSolution:\n{solution}"
)


def verification_request(question: str, steps: Sequence[str]) -> str:
    """The user turn a generative PRM answers: the task, the problem and the numbered steps."""
    solution = "\n".join(f"Step {k}: {s.strip()}" for k, s in enumerate(steps, start=1))
    return TASK.format(question=question.strip(), solution=solution)


def encode_critique(
    tokenizer: Any,
    question: str,
    steps: Sequence[str],
    verdicts: Sequence[int],
    max_length: int = 0,
) -> tuple[list[int], int, list[int]]:
    """Token ids of (request, critique of `verdicts`), the request's length, and each verdict's
    position: the index of the token before it (the last of `... \\boxed{`), whose next-token
    distribution is the verdict.

    The critique is tokenised piece by piece, split right before each verdict word, so that
    training and teacher-forced scoring put every verdict at the same boundary; its text is
    `format_critique(verdicts)` followed by the end-of-sequence token. With `max_length`, steps
    are dropped from the end (from the request and the critique alike) until the sequence fits;
    no step fits: no verdict positions.
    """
    from rwpipe.backends import apply_chat_template

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    m = len(steps)  # steps shown; the critique judges the first min(m, len(verdicts))
    while True:
        prompt = apply_chat_template(tokenizer, verification_request(question, steps[:m]))
        ids = list(tokenizer.encode(prompt, add_special_tokens=False))
        prompt_len, positions, head = len(ids), [], OPENING + "\n"
        judged = list(verdicts[:m])
        for k, y in enumerate(judged, start=1):
            ids += tokenizer.encode(f"{head}Step {k}: {CHECK} \\boxed{{", add_special_tokens=False)
            positions.append(len(ids) - 1)
            ids += tokenizer.encode(f"{VERDICT_WORD[y]}}}.\n", add_special_tokens=False)
            head = ""
        first = next((k for k, y in enumerate(judged, start=1) if y == 0), -1)
        closing = f"The first incorrect step is \\boxed{{{first}}}."
        ids += tokenizer.encode(closing, add_special_tokens=False) + eos
        if not max_length or len(ids) <= max_length:
            return ids, prompt_len, positions
        if m == 0:
            return ids[-max_length:], 0, []
        m -= 1


def verdict_tokens(tokenizer: Any) -> tuple[int, int]:
    """The first tokens of the "correct" and "incorrect" verdicts as `encode_critique` writes
    them; a generative PRM's step score is P(correct) over these two.

    Raises:
        ValueError: the tokenizer starts both verdicts with the same token.
    """
    good, bad = (
        tokenizer.encode(f"{VERDICT_WORD[y]}}}.\n", add_special_tokens=False)[0] for y in (1, 0)
    )
    if good == bad:
        raise ValueError("the tokenizer starts 'correct' and 'incorrect' with the same token")
    return good, bad


def vote_scores(critiques: Sequence[str], num_steps: int) -> list[float] | None:
    """Step scores from K sampled critiques of one solution (verifier-side test-time scaling):
    step k's score is the fraction of the parseable critiques that judge steps 1..k all
    correct (their stated first error is after k, or none), so the scores never rise along
    the solution and the first step under 0.5 is where most critiques place the first error.
    None when no critique parses (`parse_critique`: a consistent first error)."""
    firsts = [first for _, first in (parse_critique(c, num_steps) for c in critiques)]
    firsts = [num_steps if f == -1 else f for f in firsts if f is not None]
    if not firsts:
        return None
    return [sum(f > k for f in firsts) / len(firsts) for k in range(num_steps)]


# -- critiques sampled from a judge, kept where they agree with the labels ----------------------
FORMAT = (
    "\n\nWrite one line per step, in order: `Step k: <your check of step k> The step is "
    "\\boxed{correct}.` or `Step k: <your check> The step is \\boxed{incorrect}.`, and stop "
    "after the first incorrect step. End with the line `The first incorrect step is "
    "\\boxed{k}.` (k = -1 when every step is correct)."
)


def judge_request(question: str, steps: Sequence[str]) -> str:
    """What a judge model is asked for a critique: the verification request and the format."""
    return verification_request(question, steps) + FORMAT


def judged_rows(
    labels: Sequence[Mapping[str, Any]], backend: Any, *, k: int, temperature: float,
    max_new_tokens: int, seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Critiques sampled from a judge (`rwpipe.judge` backend: a local engine or a server), `k`
    per solution labelled up to its first error, keeping the first whose parsed verdicts and
    first error equal the labels' (ThinkPRM's filter). Returns the rows (source "judge") and
    the agreement statistics."""
    todo = [(r, stated) for r in labels if (stated := row_stated_labels(r))]
    texts = backend.complete([judge_request(r["question"], r["steps"]) for r, _ in todo], k,
                             temperature, max_new_tokens, seed)  # fmt: skip
    out, sampled, parsed, agreeing = [], 0, 0, 0
    for (r, stated), samples in zip(todo, texts, strict=True):
        first = next((i for i, y in enumerate(stated) if y == 0), -1)
        reads = [parse_critique(t, len(r["steps"])) for t in samples]
        good = [t for t, got in zip(samples, reads, strict=True) if got == (stated, first)]
        sampled, agreeing = sampled + len(samples), agreeing + len(good)
        parsed += sum(got[1] is not None for got in reads)
        if good:
            out.append(_critique_row(r, good[0].strip(), stated, "judge"))
    stats = {
        "solutions": len(todo), "critiques_sampled": sampled, "critiques_parsed": parsed,
        "critiques_agreeing": agreeing,
        "agreement_rate": round(agreeing / sampled, 4) if sampled else 0.0,
        "solutions_kept": len(out),
        "critique_chars_sampled": sum(len(t) for samples in texts for t in samples),
    }  # fmt: skip
    return out, stats


def run(cfg: Any, base: Any, *, labels: Any, out: Any, judge_model: Any = None) -> dict[str, Any]:
    """Stage `critiques`: verification targets for a generative PRM from LABELS (templated, or
    sampled from a judge and filtered by agreement), written to OUT; the stats.

    With a template and no solution labelled up to its first error (outcome-only labels) the
    artifact is empty (the stats say why): the other PRM kinds do not read it, and training a
    generative PRM on it is refused.

    Raises:
        InputError: a judge source with no solution labelled up to its first error, no judge
            (neither `critiques.judge.base_url` nor a judge model directory), or no sampled
            critique that agrees with the labels.
    """
    import time

    import pyarrow as pa

    from rwpipe import artifacts
    from rwpipe.errors import InputError
    from rwpipe.schemas import SPECS

    rows = [r for r in artifacts.read_artifact(labels, "labels").to_pylist()
            if r["split"] in cfg.splits]  # fmt: skip
    if not rows:
        raise InputError(f"{labels}: no labelled rollouts in split(s) {', '.join(cfg.splits)}")
    start = time.perf_counter()
    if cfg.source == "template":
        # none (outcome-only labels): an empty artifact, so the pipeline runs on for the PRM
        # kinds that do not read it; a generative PRM refuses it in one line
        got = template_rows(rows)
        stats = {} if got else {"note": "no solution labelled up to its first error"}
    elif not any(row_stated_labels(r) for r in rows):
        raise InputError(f"{labels}: no solution in split(s) {', '.join(cfg.splits)} has step "
                         "labels up to its first error to sample critiques for")  # fmt: skip
    else:
        return _run_judge(cfg, base, rows, labels=labels, out=out, judge_model=judge_model,
                          start=start)  # fmt: skip
    stats |= {"rows": len(got), "source": cfg.source,
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    table = pa.Table.from_pylist(got, schema=SPECS["critiques"].schema)
    artifacts.write_artifact(table, out, "critiques", section="critiques", config=cfg,
                             stats=stats)  # fmt: skip
    return stats


JUDGE_COUNTS = ("solutions", "critiques_sampled", "critiques_parsed", "critiques_agreeing",
                "solutions_kept", "critique_chars_sampled")  # fmt: skip


def _run_judge(cfg: Any, base: Any, rows: list[dict[str, Any]], *, labels: Any, out: Any,
               judge_model: Any, start: float) -> dict[str, Any]:  # fmt: skip
    """The judge source, `cfg.shard_size` solutions per shard (`rwpipe.artifacts.ShardStore`):
    a killed run resumes at the first unfinished shard and ends with the rows of an
    uninterrupted one. The judge (an engine or a server client) is made only when a shard is
    left to sample."""
    import time

    import pyarrow as pa

    from rwpipe import artifacts
    from rwpipe.errors import InputError
    from rwpipe.schemas import SPECS

    if not cfg.judge.base_url and judge_model is None:
        _judge(cfg, base, judge_model)  # refuses in one line, before anything is written
    todo = [r for r in rows if row_stated_labels(r)]
    size = cfg.shard_size
    shards = [todo[i : i + size] for i in range(0, len(todo), size)]
    judge_id = cfg.judge.base_url and f"{cfg.judge.base_url} {cfg.judge.model}"
    fingerprint = {"config": cfg, "seed": base.seed, "labels": artifacts.path_digest(labels),
                   "judge": judge_id or artifacts.path_digest(judge_model)}  # fmt: skip
    store = artifacts.ShardStore(out, "critiques", fingerprint)
    done = store.done()
    left = [i for i in range(len(shards)) if i not in done]
    backend = _judge(cfg, base, judge_model) if left else None
    try:
        j = cfg.judge
        for i in left:
            got, stats = judged_rows(shards[i], backend, k=j.k, temperature=j.temperature,
                                     max_new_tokens=j.max_new_tokens,
                                     seed=base.seed + i)  # fmt: skip
            store.write(i, pa.Table.from_pylist(got, schema=SPECS["critiques"].schema), stats)
    finally:
        if hasattr(backend, "generator"):  # a local engine
            backend.generator.close()
    parts = store.stats()
    stats = {key: sum(p[key] for p in parts) for key in JUDGE_COUNTS}
    sampled = stats["critiques_sampled"]
    stats["agreement_rate"] = round(stats["critiques_agreeing"] / sampled, 4) if sampled else 0.0
    if not stats["solutions_kept"]:
        import shutil

        shutil.rmtree(store.dir, ignore_errors=True)
        raise InputError(f"{labels}: none of the {sampled} sampled critiques agrees with the "
                         "labels; nothing written")  # fmt: skip
    stats |= {"rows": stats["solutions_kept"], "source": cfg.source, "shards": len(shards),
              "resumed_shards": len(done),
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    store.finish(len(shards), section="critiques", config=cfg, stats=stats)
    return stats


def _judge(cfg: Any, base: Any, judge_model: Any) -> Any:
    from rwpipe.errors import InputError
    from rwpipe.judge import LocalJudge, OpenAIJudge

    if cfg.judge.base_url:
        return OpenAIJudge.from_config(cfg.judge)
    if judge_model is None:
        raise InputError("critiques.source judge needs a judge: critiques.judge.base_url (a "
                         "server) or a local model directory (--judge-model)")  # fmt: skip
    from rwpipe.backends import load_engine

    return LocalJudge(load_engine(judge_model, cfg.engine, device=base.device, seed=base.seed))
