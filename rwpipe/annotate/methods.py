"""Step-label methods: Math-Shepherd Monte-Carlo labels and OmegaPRM's binary search.

Both work on a batch of `Solution`s (the rollouts of a few problems) and an `MCEstimator`, and
return one `StepLabels` per solution. Step t (0-based) is labelled by the Monte-Carlo value
of the prefix that *ends* with it: MC(s_{<=t}) = the fraction of completions from that prefix
that reach the gold answer. Hard label = MC > 0 ("some continuation still gets it right"),
soft label = MC.

Facts that need no sampling (shared by both methods):

- The whole solution is its own completion: when it finished by itself (finish_reason "stop"),
  the prefix ending at its last step has MC = its outcome (1 or 0), exactly.
- A correct solution is a correct continuation of each of its prefixes, so every prefix of a
  correct solution, and every prefix of another solution of the same problem that is a prefix
  of a correct solution's text, has MC > 0 (OmegaPRM's tree, where a node whose subtree holds
  a correct rollout is known positive).
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rwpipe.annotate.estimate import MCEstimator, Query
from rwpipe.steps import Solution


@dataclass
class StepLabels:
    """Labels of one solution's steps (lists are per step; None = not labelled)."""

    status: str
    hard: list[int | None] = field(default_factory=list)
    soft: list[float | None] = field(default_factory=list)
    visits: list[int] = field(default_factory=list)  # completions drawn from the prefix
    first_error: int | None = None  # 0-based index of the first wrong step; -1: none

    @classmethod
    def empty(cls, status: str, num_steps: int) -> "StepLabels":
        return cls(status, [None] * num_steps, [None] * num_steps, [0] * num_steps, None)


def unlabellable(s: Solution) -> StepLabels | None:
    """The labels of a solution no method can label, else None."""
    if not s.steps:
        return StepLabels.empty("no_steps", 0)
    if s.gold is None:
        return StepLabels.empty("no_gold", len(s.steps))
    if s.outcome is None:
        return StepLabels.empty("unverifiable", len(s.steps))
    return None


def inferred_correct(s: Solution) -> StepLabels:
    """A correct solution, not sampled: every prefix has MC > 0; the last one MC = 1."""
    n = len(s.steps)
    soft: list[float | None] = [None] * n
    if s.finished:
        soft[-1] = 1.0
    return StepLabels("inferred", [1] * n, soft, [0] * n, -1)


class _Tree:
    """Per problem, the texts of its correct solutions: a prefix of one of them is positive."""

    def __init__(self, solutions: Sequence[Solution]) -> None:
        self.correct: dict[str, list[str]] = defaultdict(list)
        for s in solutions:
            if s.outcome == 1:
                self.correct[s.problem_id].append(s.prefix(len(s.steps)))

    def positive(self, problem_id: str, prefix: str) -> bool:
        return any(text.startswith(prefix) for text in self.correct[problem_id])


def _query(s: Solution, t: int) -> Query:
    assert s.gold is not None
    return Query(s.problem_id, s.prompt, s.prefix(t), s.gold, s.index)


def math_shepherd(
    solutions: Sequence[Solution], estimator: MCEstimator, *, k: int, select: str
) -> list[StepLabels]:
    """Math-Shepherd: every step prefix of every selected solution gets k completions.

    Args:
        solutions: the batch; all their prefixes go to the completer in one call.
        estimator: the batched, cached MC estimator.
        k: completions per prefix.
        select: "all", or "incorrect" (correct solutions are labelled all-1 without sampling).

    Returns:
        Per solution: hard = [MC > 0], soft = MC for every step; first_error = the first step
        with MC = 0 (-1 if none).
    """
    out: list[StepLabels | None] = [unlabellable(s) for s in solutions]
    queries: dict[tuple[int, int], Query] = {}
    for i, s in enumerate(solutions):
        if out[i] is not None:
            continue
        if select == "incorrect" and s.outcome == 1:
            out[i] = inferred_correct(s)
            continue
        for t in range(1, len(s.steps) + 1):
            if not (t == len(s.steps) and s.finished):
                queries[(i, t)] = _query(s, t)
    estimates = dict(zip(queries, estimator.estimate(list(queries.values()), k), strict=True))
    for i, s in enumerate(solutions):
        if out[i] is not None:
            continue
        labels = StepLabels("labelled")
        for t in range(1, len(s.steps) + 1):
            if (i, t) in estimates:
                est = estimates[(i, t)]
                labels.hard.append(int(est.correct > 0))
                labels.soft.append(est.value)
                labels.visits.append(est.n)
            else:  # the finished solution's own last prefix: MC = outcome, exactly
                labels.hard.append(s.outcome)
                labels.soft.append(float(s.outcome))  # type: ignore[arg-type]
                labels.visits.append(0)
        labels.first_error = next((t for t, h in enumerate(labels.hard) if h == 0), -1)
        out[i] = labels
    return out  # type: ignore[return-value]


@dataclass
class _Search:
    """Binary search state of one incorrect solution: MC(prefix lo) > 0, MC(prefix hi) = 0.

    Prefix t holds t steps; hi = len(steps) + 1 stands for "no known zero" (a solution cut at
    max_new_tokens is not known to be wrong).
    """

    lo: int
    hi: int
    mc: dict[int, tuple[int, int]] = field(default_factory=dict)  # t -> (n, correct)


def omegaprm(
    solutions: Sequence[Solution],
    estimator: MCEstimator,
    *,
    k: int,
    k_first: int,
) -> list[StepLabels]:
    """OmegaPRM: locate each incorrect solution's first wrong step by binary search on MC.

    The search keeps lo (a prefix known to have MC > 0; 0 = the bare question) and hi (a prefix
    known to have MC = 0; the full incorrect solution) and tests the midpoint: MC(mid) > 0
    moves lo up, MC(mid) = 0 moves hi down. It ends when hi = lo + 1: step hi-1 (0-based) is
    the first error; steps before it are labelled 1, it is labelled 0, later steps are left
    unlabelled (supervision up to the first error, as in the paper).

    All searches of the batch advance in lockstep, one `generate` call per round; a search
    starts above the longest prefix a correct sibling passes through (the tree), and a
    midpoint already in the cache is not sampled again. Each test draws `k_first` completions,
    and the remaining `k - k_first` only when none of those reached the gold answer: one
    correct completion already proves MC > 0 (`k_first = k` turns this off).

    Returns:
        Per solution: correct ones all-1 ("inferred"); a problem whose bare question gets no
        correct completion in k tries is "too_hard" (the paper drops such questions).

    Over 80 lines on purpose: the lockstep rounds (pick midpoints, one batched estimate,
    move the bounds) share the searches' state and read best as one loop.
    """
    out: list[StepLabels | None] = [unlabellable(s) for s in solutions]
    tree = _Tree(solutions)
    for i, s in enumerate(solutions):
        if out[i] is None and s.outcome == 1:
            out[i] = inferred_correct(s)
    searching = [i for i, s in enumerate(solutions) if out[i] is None]

    # The root: MC(question) > 0 is known when a sibling solution is correct; else estimate it.
    roots = {}
    for i in searching:
        s = solutions[i]
        if not tree.positive(s.problem_id, "") and s.problem_id not in roots:
            roots[s.problem_id] = _query(s, 0)
    root_mc = _test(estimator, list(roots.values()), k, k_first)
    hard = {pid for pid, (n, c) in zip(roots, root_mc, strict=True) if c == 0}

    searches: dict[int, _Search] = {}
    for i in searching:
        s = solutions[i]
        if s.problem_id in hard:
            out[i] = StepLabels.empty("too_hard", len(s.steps))
            continue
        n = len(s.steps)
        hi = n if s.finished else n + 1
        # lo: the longest prefix a correct sibling passes through (0: the question itself,
        # known positive from a sibling or from the root estimate above).
        lo = max((t for t in range(hi) if tree.positive(s.problem_id, s.prefix(t))), default=0)
        searches[i] = _Search(lo, hi)

    while active := [i for i, st in searches.items() if st.hi - st.lo > 1]:
        # Every prefix past lo is off the tree (lo is the longest on it), so each midpoint is
        # sampled, unless the cache already holds it (a sibling's search asked for it).
        mids = {i: (searches[i].lo + searches[i].hi) // 2 for i in active}
        results = _test(estimator, [_query(solutions[i], mids[i]) for i in active], k, k_first)
        for i, (n, correct) in zip(active, results, strict=True):
            st, mid = searches[i], mids[i]
            st.mc[mid] = (n, correct)
            if correct > 0:
                st.lo = mid
            else:
                st.hi = mid

    for i, st in searches.items():
        s = solutions[i]
        steps = len(s.steps)
        labels = StepLabels.empty("labelled", steps)
        first_error = st.hi - 1 if st.hi <= steps else -1
        last = first_error if first_error >= 0 else steps - 1
        for t in range(last + 1):
            labels.hard[t] = int(t != first_error)
        for t, (n, correct) in st.mc.items():  # prefix of t steps ends with step t-1
            if t >= 1:
                labels.soft[t - 1], labels.visits[t - 1] = correct / n, n
        if s.finished and st.hi == steps:  # the solution's own wrong final answer
            labels.soft[steps - 1] = 0.0
        labels.first_error = first_error
        out[i] = labels
    return out  # type: ignore[return-value]


def _test(
    estimator: MCEstimator, queries: list[Query], k: int, k_first: int
) -> list[tuple[int, int]]:
    """(completions, correct) per query: k_first completions, then up to k if none was correct."""
    if not queries:
        return []
    first = estimator.estimate(queries, k_first)
    zero = [q for q, est in zip(queries, first, strict=True) if est.correct == 0]
    if zero and k > k_first:
        estimator.estimate(zero, k)
    return [
        (est.n, est.correct)
        for est in (estimator.known(q.problem_id, q.prefix) for q in queries)
        if est is not None
    ]
