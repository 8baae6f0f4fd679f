"""Rule verification of final answers with math-verify, safe against hangs.

`check_answer(gold, completion)` parses both sides with math-verify and compares them
(`verify(gold, pred)`: the order matters, gold first). It runs in the calling process and relies
on math-verify's own SIGALRM timeouts, which only work in a main thread.

`verify_many(...)` is what stages call: it runs `check_answer` in a small pool of worker
processes and enforces a per-item deadline from outside. A worker that hangs (a pathological
expression such as `9^9^9^9`, a huge answer, a sympy bug) is killed and replaced, and that item is
recorded as "unverifiable": one bad item never crashes or stalls a stage.

Verdicts: "correct", "incorrect" (including completions with no extractable answer),
"unverified" (no gold answer to check against) and "unverifiable" (the checker failed or timed
out on this item).

`answers_equal(pairs)` asks the same question of two extracted answers (`same_answer`, in the
same killable workers): whether math-verify judges them equal, so that votes can group
`\\frac12`, `0.5` and `1/2` together.
"""

import functools
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

# math-verify's own timeouts (seconds); the outer deadline adds a margin for process overhead.
_PARSE_TIMEOUT_S = 3
_VERIFY_TIMEOUT_S = 3
MAX_ANSWER_CHARS = 400  # longer extracted strings are cut in the artifact, not in the check


@dataclass(frozen=True)
class Verdict:
    """The result of checking one completion.

    Attributes:
        verdict: correct | incorrect | unverified | unverifiable.
        pred: the extracted final answer (math-verify's string form), None if none found.
        error: why the item is unverifiable, else None.
    """

    verdict: str
    pred: str | None = None
    error: str | None = None


def extract_answer(completion: str) -> str | None:
    """The final answer math-verify extracts from `completion` (boxed, "answer is", last number)."""
    from math_verify import parse

    parsed = parse(completion, parsing_timeout=_PARSE_TIMEOUT_S, raise_on_error=True)
    return str(parsed[1])[:MAX_ANSWER_CHARS] if len(parsed) > 1 else None


def _as_latex(gold: str) -> str:
    """Gold answers are bare LaTeX (`2\\sqrt{2}`, `(1, 2)`): math-verify needs delimiters to
    read them as one expression instead of extracting the last number."""
    return gold if "$" in gold or "\\boxed" in gold else f"${gold}$"


def check_answer(gold: str | None, completion: str) -> Verdict:
    """Check `completion` against the gold answer, in this process.

    Args:
        gold: the normalised gold answer, or None when the problem has none.
        completion: the model's full output.

    Returns:
        The verdict; exceptions and math-verify timeouts become "unverifiable".
    """
    from math_verify import parse, verify

    try:
        parsed = parse(completion, parsing_timeout=_PARSE_TIMEOUT_S, raise_on_error=True)
        pred = str(parsed[1])[:MAX_ANSWER_CHARS] if len(parsed) > 1 else None
        if gold is None:
            return Verdict("unverified", pred)
        if not parsed:
            return Verdict("incorrect", None)
        gold_parsed = parse(_as_latex(gold), parsing_timeout=_PARSE_TIMEOUT_S, raise_on_error=True)
        ok = verify(gold_parsed, parsed, timeout_seconds=_VERIFY_TIMEOUT_S, raise_on_error=True)
        return Verdict("correct" if ok else "incorrect", pred)
    except Exception as exc:  # noqa: BLE001 - any checker failure is a property of the item
        return Verdict(
            "unverifiable", None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
        )


@functools.lru_cache(maxsize=4096)
def _parse_answer(answer: str) -> list:
    """math-verify's parse of an extracted answer, cached: an answer is compared with every
    representative of its problem's answer groups."""
    from math_verify import parse

    return parse(_as_latex(answer), parsing_timeout=_PARSE_TIMEOUT_S, raise_on_error=True)


def same_answer(first: str, second: str) -> Verdict:
    """Whether math-verify judges two extracted final answers equal, in this process:
    "correct" if it does, "incorrect" if not, "unverifiable" if the checker failed. `first`
    takes the gold's place in `verify` (the order can matter for sets and intervals)."""
    from math_verify import verify

    try:
        a, b = _parse_answer(first), _parse_answer(second)
        ok = bool(a and b) and verify(a, b, timeout_seconds=_VERIFY_TIMEOUT_S, raise_on_error=True)
        return Verdict("correct" if ok else "incorrect", second)
    except Exception as exc:  # noqa: BLE001 - any checker failure is a property of the item
        return Verdict(
            "unverifiable", None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
        )


def answers_equal(
    pairs: Sequence[tuple[str, str]],
    *,
    timeout_s: float = 10.0,
    workers: int = 2,
    pool: "VerifierPool | None" = None,
) -> list[bool]:
    """`same_answer` for each pair in worker processes with a deadline each (as `verify_many`);
    a pair the checker fails or times out on counts as not equal. No pair, no process.

    Args:
        pairs: (first, second) extracted answers.
        timeout_s, workers: as `verify_many`, for a pool started here.
        pool: a running `VerifierPool(task=same_answer)` to use instead (it keeps its workers
            and their parse caches across calls).
    """
    if not pairs:
        return []
    if pool is None:
        with VerifierPool(workers, timeout_s, task=same_answer) as own:
            return answers_equal(pairs, pool=own)
    if pool.task is not same_answer:
        raise ValueError("answers_equal needs a VerifierPool(task=same_answer)")
    got = pool.check([a for a, _ in pairs], [b for _, b in pairs])
    return [v.verdict == "correct" for v in got]


def _serve(conn: Connection, task: Callable[[str | None, str], Verdict]) -> None:
    """Worker loop: import once, then apply `task` to items until the pipe closes."""
    import math_verify  # noqa: F401 - warm the import before reporting ready

    conn.send("ready")
    while True:
        try:
            first, second = conn.recv()
        except EOFError:
            return
        conn.send(task(first, second))


class _Worker:
    """One checker process and the item it is working on."""

    def __init__(self, ctx: mp.context.BaseContext, task: Callable = check_answer) -> None:
        self.task = task
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, task), daemon=True)
        self.proc.start()
        child.close()
        self.conn.recv()  # "ready": the deadline must not include the import of sympy
        self.index: int | None = None
        self.deadline = 0.0

    def submit(self, index: int, item: tuple[str | None, str], timeout_s: float) -> None:
        self.index, self.deadline = index, time.monotonic() + timeout_s
        self.conn.send(item)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class VerifierPool:
    """Checker processes kept alive across calls (spawning one costs ~1-2 s of imports).

    Use as a context manager; workers start on the first `check` and stop on exit. `task` is
    what a worker does with an item: `check_answer(gold, completion)` by default, or
    `same_answer(first, second)` (a module-level function: spawned workers import it).
    """

    def __init__(
        self, workers: int = 2, timeout_s: float = 10.0, task: Callable = check_answer
    ) -> None:
        self.workers, self.timeout_s, self.task = workers, timeout_s, task
        self._ctx = mp.get_context("spawn")  # fork is unsafe once torch/vLLM threads exist
        self._pool: list[_Worker] = []

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self._pool:
            w.stop()
        self._pool = []

    def check(
        self,
        golds: Sequence[str | None],
        completions: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> list[Verdict]:
        """Check every completion against its gold answer; see `verify_many`."""
        if len(golds) != len(completions):
            raise ValueError("golds and completions differ in length")
        pending = deque(enumerate(zip(golds, completions, strict=True)))
        results: list[Verdict | None] = [None] * len(golds)
        while len(self._pool) < min(self.workers, len(pending)):
            self._pool.append(_Worker(self._ctx, self.task))
        while pending or any(w.index is not None for w in self._pool):
            for w in self._pool:
                if w.index is None and pending:
                    w.submit(*pending.popleft(), self.timeout_s)
            _collect(self._pool, results, self._ctx, progress)
        return results  # type: ignore[return-value]


def verify_many(
    golds: Sequence[str | None],
    completions: Sequence[str],
    *,
    timeout_s: float = 10.0,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Check every completion against its gold answer in worker processes, with a deadline each.

    Args:
        golds: gold answer per item (None: no gold, the verdict is "unverified").
        completions: the model outputs, same length as `golds`.
        timeout_s: wall-clock budget per item; past it the worker is killed and the item is
            "unverifiable".
        workers: number of checker processes.
        progress: called with 1 after each finished item.

    Returns:
        One verdict per item, in input order.
    """
    with VerifierPool(workers, timeout_s) as pool:
        return pool.check(golds, completions, progress)


def _collect(pool: list[_Worker], results: list, ctx, progress) -> None:
    """Wait for the first result or deadline; record results and replace hung workers."""
    busy = [w for w in pool if w.index is not None]
    now = time.monotonic()
    ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - now))
    now = time.monotonic()
    for i, w in enumerate(pool):
        if w.index is None:
            continue
        if w.conn in ready:
            try:
                results[w.index] = w.conn.recv()
            except (EOFError, OSError):  # the worker died (segfault, OOM kill)
                results[w.index] = Verdict("unverifiable", None, "checker process died")
                w.stop()
                pool[i] = w = _Worker(ctx, w.task)
        elif now >= w.deadline:
            results[w.index] = Verdict("unverifiable", None, "timeout")
            w.stop()
            pool[i] = w = _Worker(ctx, w.task)
        else:
            continue
        w.index = None
        if progress:
            progress(1)
