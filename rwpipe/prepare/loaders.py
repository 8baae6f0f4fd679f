"""Load math problems with gold answers from local files or the Hugging Face Hub.

Inputs are `.jsonl`, `.json` (an array of objects) or `.parquet` files, a directory of them,
or `hf:<dataset>[:<config>]`. Row formats:

- `gsm8k`: `question`, `answer` (worked solution ending in `#### <number>`).
- `math`: `problem`, `solution` with `\\boxed{}`, optional `answer`, `subject`, `level`,
  `unique_id` (MATH, MATH-500, PRM800K splits).
- `generic`: `question` | `problem` | `prompt` and `answer` | `final_answer` | `gold`.
- `auto`: the first of the above whose columns the file has.

Gold answers are normalised (thousands separators and `$` removed, LaTeX kept): a bare integer
parses with math-verify as is; LaTeX answers such as `\\frac{1}{2}` need `$...$` around them
(math-verify only reads LaTeX inside math delimiters or `\\boxed{}`). Rows without a usable gold
answer are dropped and counted in `LoadedRows.dropped`.
"""

import json
import os
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

from rwpipe.errors import InputError
from rwpipe.runtime import stable_seed

FORMATS = ("auto", "gsm8k", "math", "generic")
SUFFIXES = (".jsonl", ".json", ".parquet")
QUESTION_KEYS = ("question", "problem", "prompt")
ANSWER_KEYS = ("answer", "final_answer", "gold")
ID_KEYS = ("unique_id", "id")

_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations: 2+3=<<2+3=5>>5
# A number written with thousands separators: 1,000 or -12,345.5 (but not a list like 1,2).
_GROUPED_NUMBER = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class LoadedRows(NamedTuple):
    """Problems read from one input.

    Attributes:
        rows: rows of the problems schema, in file order.
        dropped: rows skipped because they had no question or no usable gold answer.
    """

    rows: list[dict]
    dropped: int


def load_problems(spec: str, split: str, fmt: str, n: int, seed: int, hf_split: str) -> list[dict]:
    """Load problems from a file, a directory or a hub dataset, optionally a seeded subset.

    Args:
        spec: a path (file or directory) or `hf:<dataset>[:<config>]`.
        split: the `split` value written into every row (train | eval).
        fmt: one of `FORMATS`.
        n: rows to keep; 0 keeps all, otherwise a seeded random subset in file order.
        seed: seed of the subset.
        hf_split: the hub split name (ignored for local files).

    Returns:
        Rows of the problems schema.

    Raises:
        InputError: unreadable or malformed input, missing columns, or no usable row.
    """
    return take_subset(read_rows(spec, split, fmt, hf_split).rows, n, seed)


def read_rows(spec: str, split: str, fmt: str, hf_split: str) -> LoadedRows:
    """Read every usable row of an input (see `load_problems` for the arguments).

    Raises:
        InputError: unreadable or malformed input, missing columns, or no usable row.
    """
    if fmt not in FORMATS:
        raise InputError(f"{spec}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if spec.startswith("hf:"):
        source, files = _read_hub(spec, hf_split)
    else:
        source, files = _local_source(Path(spec)), _read_local(Path(spec))
    rows, dropped, index = [], 0, 0
    for where, records in files:
        file_fmt = _resolve_format(fmt, records, where)
        for record in records:
            row = _to_row(file_fmt, record, source, index, split)
            index += 1  # counts dropped rows too, so `<source>-<index>` ids survive a fix
            if row is None:
                dropped += 1
            else:
                rows.append(row)
    if not rows:
        raise InputError(f"{spec}: no usable rows ({dropped} without a question or gold answer)")
    return LoadedRows(_dedupe_ids(rows), dropped)


def take_subset(rows: list[dict], n: int, seed: int) -> list[dict]:
    """A seeded random subset of `n` rows kept in their original order; all rows if n is 0."""
    if n == 0 or n >= len(rows):
        return list(rows)
    keep = sorted(random.Random(stable_seed("subset", seed)).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


# ----------------------------------------------------------------------------------------------
# Reading records


def _local_source(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def _read_local(path: Path) -> list[tuple[str, list[dict]]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or directory")
    return [(str(f), _read_file(f)) for f in files]


def _read_file(path: Path) -> list[dict]:
    match path.suffix:
        case ".jsonl":
            return _read_jsonl(path)
        case ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: not valid JSON: {exc}") from None
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise InputError(f"{path}: expected a JSON array of objects")
            return data
        case ".parquet":
            import pyarrow.parquet as pq  # only this branch needs it

            return pq.read_table(path).to_pylist()
    raise InputError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object")
            records.append(record)
    return records


def _read_hub(spec: str, hf_split: str) -> tuple[str, list[tuple[str, list[dict]]]]:
    name, _, config = spec.removeprefix("hf:").partition(":")
    offline = any(os.environ.get(v, "") in ("1", "true") for v in _OFFLINE_VARS)
    if not offline and not _hub_reachable():
        # Without this probe load_dataset retries before failing: 23 s measured here with DNS
        # failing at once, longer where packets are dropped.
        raise InputError(f"{spec}: the Hugging Face Hub is unreachable (offline?)")
    import datasets  # heavy and only needed for hub inputs

    try:
        ds = datasets.load_dataset(name, config or None, split=hf_split)
    except Exception as exc:  # noqa: BLE001 -- datasets raises many types; report one line
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"{spec}: cannot load split {hf_split!r}: {reason}") from None
    return name, [(f"{spec}[{hf_split}]", ds.to_list())]


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Formats


def _resolve_format(fmt: str, records: list[dict], where: str) -> str:
    columns = sorted({k for r in records for k in r})
    has = set(columns)
    question_keys, answer_keys = has & set(QUESTION_KEYS), has & set(ANSWER_KEYS)
    if fmt == "auto" and records:
        if {"question", "answer"} <= has and "####" in str(records[0].get("answer")):
            return "gsm8k"
        fmt = "math" if {"problem", "solution"} <= has else "generic"
    required = {
        "gsm8k": {"question", "answer"} <= has,
        "math": "problem" in has and bool(has & {"answer", "solution"}),
        "generic": bool(question_keys and answer_keys),
        "auto": True,  # an empty file: nothing to convert
    }
    if not required[fmt]:
        found = ", ".join(columns) or "none"
        raise InputError(f"{where}: format {fmt!r} {_NEEDS[fmt]}; columns found: {found}")
    return fmt


_NEEDS = {
    "gsm8k": "needs question, answer",
    "math": "needs problem and answer or solution",
    "generic": f"needs one of {'|'.join(QUESTION_KEYS)} and one of {'|'.join(ANSWER_KEYS)}",
}


def _to_row(fmt: str, record: dict, source: str, index: int, split: str) -> dict | None:
    match fmt:
        case "gsm8k":
            question, (solution, gold) = record["question"], _split_gsm8k(record["answer"])
            category, level = None, None
        case "math":
            question, solution = record["problem"], record.get("solution")
            gold = _text(record.get("answer")) or last_boxed(_text(solution) or "")
            category, level = record.get("subject") or record.get("type"), record.get("level")
        case _:
            question = next((record[k] for k in QUESTION_KEYS if record.get(k) is not None), None)
            gold = next((_text(record[k]) for k in ANSWER_KEYS if record.get(k) is not None), None)
            solution, level = record.get("solution"), record.get("level")
            category = record.get("category") or record.get("subject")
    gold = normalize_answer(gold)
    if gold is None or not _text(question):
        return None
    source = fmt if fmt in ("gsm8k", "math") else source
    row_id = next((record[k] for k in ID_KEYS if record.get(k) not in (None, "")), None)
    return {
        "problem_id": str(row_id) if row_id is not None else f"{source}-{index}",
        "split": split,
        "source": source,
        "question": str(question),
        "answer": gold,
        "solution": _text(solution),
        "category": _text(category),
        "level": _level(level),
    }


def _split_gsm8k(answer: Any) -> tuple[str | None, str | None]:
    text = _text(answer) or ""
    if "####" not in text:
        return (text or None), None
    body, _, final = text.rpartition("####")
    return _CALC.sub("", body).strip() or None, final.strip()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _level(value: Any) -> int | None:
    # MATH stores 3 or "Level 3"; "Level ?" occurs in the source data and means unknown.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    digits = re.search(r"\d+", str(value))
    return int(digits.group()) if digits else None


def _dedupe_ids(rows: list[dict]) -> list[dict]:
    seen: set[str] = set()
    for row in rows:
        base, k = row["problem_id"], 1
        while row["problem_id"] in seen:  # a directory of files may repeat an id
            k += 1
            row["problem_id"] = f"{base}-{k}"
        seen.add(row["problem_id"])
    return rows


# ----------------------------------------------------------------------------------------------
# Answers


def normalize_answer(answer: str | None) -> str | None:
    """Normalise a gold final answer so math-verify compares it reliably.

    Removes surrounding `$...$`, currency `$`/`\\$`, thousands separators (`1,000`, `10,\\!000`)
    and a trailing period; keeps LaTeX (`\\frac{1}{2}`) as it is.

    Args:
        answer: the raw answer text, or None.

    Returns:
        The normalised answer, or None if nothing usable is left.
    """
    if answer is None:
        return None
    # ",\!" is the LaTeX thousands separator (MATH writes 10,\!080 and 11,\! 111,\! 100).
    text = re.sub(r",\s*\\!\s*", "", str(answer).strip())
    text = text.replace("\\$", "").replace("$", "").strip()
    if _GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    if re.fullmatch(r"-?[\d.]+\.", text):  # "5." at the end of a sentence
        text = text[:-1]
    return text or None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}` in `text`, braces matched.

    Also reads the brace-less form `\\boxed 5`. Escaped braces (`\\{`, `\\}`) are content.

    Args:
        text: a solution in LaTeX.

    Returns:
        The boxed content, or None if there is no complete box.
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if i < len(text) and text[i] == " ":
        inline = re.match(r"\s*([^\s$]+)", text[i:])
        return inline.group(1).rstrip(".") if inline else None
    if i >= len(text) or text[i] != "{":
        return None
    depth, j = 0, i
    while j < len(text):
        if text[j] == "\\":  # a command or an escaped brace: never a group delimiter
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip() or None
        j += 1
    return None
