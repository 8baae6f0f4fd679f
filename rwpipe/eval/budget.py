"""Test-time scaling on one budget axis (stage `search`): every method at every budget on the
same problems, accuracy against generated tokens, and the compute-optimal method per
difficulty level (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally").

A budget N means, per method (`search.methods`):

- `majority`: the plain majority vote over the problem's first N rollouts, no reward model
  (self-consistency: the baseline every reward-model method has to beat at equal tokens; at
  N = 1 it is pass@1);
- `best_of_n`: the PRM's pick (step scores aggregated by `search.aggregation`) among the
  problem's first N rollouts, in sample_idx order;
- `weighted_vote`: the PRM-weighted majority vote over the same N rollouts (answers
  math-verify judges equal vote together; weights `rwpipe.eval.metrics.vote_weights`);
- `beam`: N beams, each expanded `search.expansions` ways per step; `dvts`: N independent
  subtrees; `particles`: N particles (all three `rwpipe.eval.search.search_together`, in
  lockstep: one engine call per depth for every method and budget).

Tokens are what the method generated for the problem: for the pool methods the sum of the N
rollouts' `num_tokens`, for the searches the new tokens of every continuation they sampled
(a prefix re-sent at each depth is prompt, not counted; a step's discarded rest is counted).

Departures from search-and-learn: the pool methods reuse the rollouts instead of sampling N
fresh solutions (the rollouts are independent samples, so the first N are a random N), and
beam search's N is the number of beams kept, each with `expansions` children (search-and-learn
keeps N / beam_width beams of beam_width children): compare methods on the tokens axis, where
both choices are paid for.

Records are written per shard of `search.shard_size` problems (`rwpipe.artifacts.ShardStore`):
a killed run resumes at the first unfinished shard. Intervals are 95% percentile bootstraps
over problems (`BUDGET_CI`); with few problems and an accuracy of 0 or 1 the interval is a
point, so read the problem count beside it.
"""

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rwpipe.config import POOL_METHODS, TREE_METHODS, BaseConfig, SearchStageConfig
from rwpipe.errors import InputError
from rwpipe.eval.curves import BOOTSTRAP_RESAMPLES, pooled_ci
from rwpipe.eval.metrics import ScoreKind, aggregate, pick_best, pick_majority
from rwpipe.eval.search import ScoreFn, search_together
from rwpipe.runtime import stable_seed
from rwpipe.schemas import SEARCH_METHODS
from rwpipe.steps import StepRule

BUDGET_CI = f"percentile bootstrap over problems, {BOOTSTRAP_RESAMPLES} resamples"
VERSUS_CI = (
    "normal approximation: mean ± 1.96 standard errors of the paired per-problem differences"
)


class Problem(NamedTuple):
    """One searched problem and its rollout pool."""

    problem_id: str
    level: int | None  # difficulty from the problems artifact (None: unknown)
    question: str
    prompt: str  # the chat prompt the rollouts were sampled from
    gold: str | None
    samples: list[dict[str, Any]]  # its rollouts, in sample_idx order


# ----------------------------------------------------------------------------------------------
# One shard of problems: every method at every budget


def search_shard(
    problems: Sequence[Problem],
    generator: Any,
    score: ScoreFn,
    cfg: SearchStageConfig,
    *,
    kind: ScoreKind,
    seed: int,
    rule: StepRule,
    eos_token_id: int | None = None,
) -> list[dict[str, Any]]:
    """Per-problem records (`search_records` rows) of every method in `cfg.methods` at every
    budget in `cfg.budgets`, ordered by problem, method, budget.

    Args:
        problems: the shard's problems.
        generator: the policy's engine (unused when no tree method is asked).
        score: the PRM: (questions, prompts, step lists) -> step scores per solution.
        cfg: the search section.
        kind: the PRM's score kind (`cfg.aggregation` must be defined for it).
        seed: the shard's seed; each tree method and budget searches with one derived from it.
        rule: what a step is.
        eos_token_id: the end-of-solution token; by default the generator tokenizer's.
    """
    out = pool_records(problems, score, cfg, kind) + tree_records(
        problems, generator, score, cfg, kind=kind, seed=seed, rule=rule, eos_token_id=eos_token_id
    )
    order = {m: i for i, m in enumerate(SEARCH_METHODS)}
    place = {p.problem_id: i for i, p in enumerate(problems)}
    return sorted(out, key=lambda r: (place[r["problem_id"]], order[r["method"]], r["budget"]))


def pool_records(
    problems: Sequence[Problem], score: ScoreFn, cfg: SearchStageConfig, kind: ScoreKind
) -> list[dict[str, Any]]:
    """The majority vote, best-of-N and the PRM-weighted vote over each problem's first N
    rollouts, per budget. Tied picks share the credit (`pick_best`, `pick_majority`), so
    `correct` may be a fraction. The PRM scores nothing when only the majority is asked."""
    from rwpipe.eval.curves import answer_classes

    methods = [m for m in cfg.methods if m in POOL_METHODS]
    if not methods or not problems:
        return []
    top = max(cfg.budgets)
    pools = [p.samples[:top] for p in problems]
    rows = [r for pool in pools for r in pool]
    if set(methods) - {"majority"}:
        steps = score([r["question"] for r in rows], [r["prompt"] for r in rows],
                      [r["steps"] for r in rows])  # fmt: skip
        values = iter([aggregate(s, cfg.aggregation, kind) for s in steps])
    else:
        values = iter([math.nan] * len(rows))
    voting = bool({"majority", "weighted_vote"} & set(methods))
    classes = answer_classes([[r["pred"] for r in pool] for pool in pools]) if voting else None
    out = []
    for i, (p, pool) in enumerate(zip(problems, pools, strict=True)):
        samples = [(classes[i].get(r["pred"]) if classes else r["pred"],
                    r["verdict"] == "correct", next(values)) for r in pool]  # fmt: skip
        for n in cfg.budgets:
            tokens = sum(r["num_tokens"] for r in pool[:n])
            for m in methods:
                weighted = m == "weighted_vote"
                hit = (pick_best(samples[:n]) if m == "best_of_n"
                       else pick_majority(samples[:n], weighted=weighted, kind=kind))  # fmt: skip
                out.append(_record(p, m, n, tokens, hit))
    return out


def tree_records(
    problems: Sequence[Problem],
    generator: Any,
    score: ScoreFn,
    cfg: SearchStageConfig,
    *,
    kind: ScoreKind,
    seed: int,
    rule: StepRule,
    eos_token_id: int | None = None,
) -> list[dict[str, Any]]:
    """Beam search, DVTS and particle filtering at each budget on all problems of the shard,
    every (method, budget) search in lockstep (`search_together`: one engine call per depth
    and sampling setting, one PRM batch per depth); every answer checked in one verifier batch
    at the end."""
    from rwpipe.verify import verify_many

    runs = [(m, n) for m in cfg.methods if m in TREE_METHODS for n in cfg.budgets]
    if not runs or not problems:
        return []
    got = search_together(
        generator, score, [p.question for p in problems], [p.prompt for p in problems],
        [cfg.tree(m, n) for m, n in runs], seed=stable_seed(seed, "search"),
        resample_seeds=[stable_seed(seed, m, n) for m, n in runs], rule=rule,
        eos_token_id=eos_token_id, kind=kind,
    )  # fmt: skip
    found = [(p, m, n, g) for (m, n), records in zip(runs, got, strict=True)
             for p, g in zip(problems, records, strict=True)]  # fmt: skip
    verdicts = verify_many([p.gold for p, *_ in found], [g["text"] for *_, g in found])
    out = []
    for (p, method, n, g), v in zip(found, verdicts, strict=True):
        ess = math.fsum(g["ess"]) / len(g["ess"]) if g.get("ess") else None
        out.append(_record(p, method, n, g["tokens"], float(v.verdict == "correct"), ess))
    return out


def _record(p: Problem, method: str, budget: int, tokens: int, correct: float,
            ess: float | None = None) -> dict[str, Any]:  # fmt: skip
    return {"problem_id": p.problem_id, "level": p.level, "method": method, "budget": budget,
            "tokens": int(tokens), "correct": float(correct), "ess_mean": ess}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Aggregates: the budget curve and the compute-optimal table


def _point(records: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Accuracy with its 95% interval, and mean generated tokens, over `records`' problems."""
    hits = [float(r["correct"]) for r in records]
    lo, hi = pooled_ci(hits, [1.0] * len(hits), seed=seed)
    tokens = sum(r["tokens"] for r in records) / len(hits)
    out = {"problems": len(hits), "accuracy": math.fsum(hits) / len(hits), "ci95_lo": lo,
           "ci95_hi": hi, "tokens_per_problem": tokens}  # fmt: skip
    ess = [r["ess_mean"] for r in records if r.get("ess_mean") is not None]
    return out | ({"ess_mean": math.fsum(ess) / len(ess)} if ess else {})


def _by(records: Sequence[Mapping[str, Any]], *keys: str) -> dict[tuple, list[Mapping[str, Any]]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def _method_order(method: str) -> int:
    return SEARCH_METHODS.index(method)


def budget_points(records: Sequence[Mapping[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """One point per (method, budget): {"method", "budget", "problems", "accuracy",
    "ci95_lo", "ci95_hi", "tokens_per_problem"} (+ "ess_mean" for particles), in method
    then budget order."""
    groups = _by(records, "method", "budget")
    keys = sorted(groups, key=lambda k: (_method_order(k[0]), k[1]))
    return [{"method": m, "budget": n} | _point(groups[(m, n)], seed) for m, n in keys]


def compute_optimal(records: Sequence[Mapping[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per difficulty level (and "all" levels) and budget, the best method: the highest
    accuracy, ties to the fewer mean tokens (then to the earlier method in `SEARCH_METHODS`).

    Returns:
        Rows {"level" (int, "unknown" or "all"), "budget", "method", "problems", "accuracy",
        "ci95_lo", "ci95_hi", "tokens_per_problem"}, levels ascending, "all" last.
    """
    levels = sorted({r["level"] for r in records if r["level"] is not None})
    buckets: list[tuple[Any, list[Mapping[str, Any]]]] = [
        (lv, [r for r in records if r["level"] == lv]) for lv in levels
    ]
    if unknown := [r for r in records if r["level"] is None]:
        buckets.append(("unknown", unknown))
    if records:
        buckets.append(("all", list(records)))
    out = []
    for level, rows in buckets:
        for n in sorted({r["budget"] for r in rows}):
            points = budget_points([r for r in rows if r["budget"] == n], seed=seed)
            best = min(points, key=lambda p: (-round(p["accuracy"], 9), p["tokens_per_problem"],
                                              _method_order(p["method"])))  # fmt: skip
            out.append({"level": level} | {k: v for k, v in best.items() if k != "ess_mean"})
    return out


def versus_majority(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Does a method beat the plain majority vote at the same N? Per method and budget, the
    paired per-problem difference in correctness (method minus majority, on the problems both
    ran), its normal 95% interval and verdict (`rwpipe.eval.claims`), and the method's tokens
    over the majority's. Empty without majority records; no row for a pool method at N = 1
    (the same sample as the vote's, by construction).

    Returns:
        Rows {"method", "budget", "estimate", "ci95_lo", "ci95_hi", "n", "verdict",
        "tokens_ratio"}, in method then budget order.
    """
    from rwpipe.eval.claims import paired, verdict

    base = {(r["problem_id"], r["budget"]): r for r in records if r["method"] == "majority"}
    out = []
    groups = _by(records, "method", "budget")
    for method, n in sorted(groups, key=lambda k: (_method_order(k[0]), k[1])):
        rows = groups[(method, n)]
        both = [(r, base[(r["problem_id"], n)]) for r in rows if (r["problem_id"], n) in base]
        if method == "majority" or (method in POOL_METHODS and n == 1) or not both:
            continue  # one sample: every pool method picks it, as the vote does
        est, lo, hi = paired([float(r["correct"]) for r, _ in both],
                             [float(m["correct"]) for _, m in both])  # fmt: skip
        spent = sum(m["tokens"] for _, m in both)
        ratio = sum(r["tokens"] for r, _ in both) / spent if spent else None
        out.append({"method": method, "budget": n, "estimate": est, "ci95_lo": lo, "ci95_hi": hi,
                    "n": len(both), "verdict": verdict(lo, hi), "tokens_ratio": ratio})  # fmt: skip
    return out


def summarize(
    records: Sequence[Mapping[str, Any]], cfg: SearchStageConfig, *, seed: int = 0
) -> dict[str, Any]:
    """metrics.json: the points by method and budget, the compute-optimal table by level and
    budget, and each method against the majority vote at equal N (nested mappings, so that
    `dvc metrics diff` shows each number)."""
    points: dict[str, dict[str, Any]] = defaultdict(dict)
    for p in budget_points(records, seed=seed):
        rest = {k: v for k, v in p.items() if k not in ("method", "budget")}
        points[p["method"]][str(p["budget"])] = rest
    table: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in compute_optimal(records, seed=seed):
        rest = {k: v for k, v in row.items() if k not in ("level", "budget")}
        table[str(row["level"])][str(row["budget"])] = rest
    versus: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in versus_majority(records):
        versus[row["method"]][str(row["budget"])] = {
            k: v for k, v in row.items() if k not in ("method", "budget")
        }
    return {
        "problems": len({r["problem_id"] for r in records}),
        "budgets": list(cfg.budgets),
        "methods": list(cfg.methods),
        "aggregation": cfg.aggregation,
        "ci_method": BUDGET_CI,
        "points": dict(points),
        "compute_optimal": dict(table),
        "versus_majority": dict(versus),
        "versus_majority_ci_method": VERSUS_CI,
    }


# ----------------------------------------------------------------------------------------------
# The stage


def check_inputs(
    cfg: SearchStageConfig, *, problems: Path, rollouts: Path, policy: Path, prm: Path
) -> list[Problem]:
    """`cfg.problems` problems of `cfg.split`, spread over the difficulty levels
    (`spread_over_levels`), with their levels and rollout pools; nothing here loads a model.

    Raises:
        InputError: no rollouts in the split, a problem missing from the problems artifact, a
            pool smaller than the largest budget (best-of-N, weighted vote), a path that is not
            a model directory or not a reward model.
        ArtifactError: an input that is not a valid artifact (a missing column, ...).
    """
    from rwpipe.artifacts import check_model_dir, read_artifact
    from rwpipe.eval.curves import _groups
    from rwpipe.score import detect_format

    check_model_dir(policy, hint=True)
    check_model_dir(prm)
    rows = [r for r in read_artifact(rollouts, "rollouts").to_pylist() if r["split"] == cfg.split]
    if not rows:
        raise InputError(f"{rollouts}: no rollouts in split {cfg.split}")
    table = read_artifact(problems, "problems")
    levels = dict(zip(table["problem_id"].to_pylist(), table["level"].to_pylist(), strict=True))
    need = max(cfg.budgets) if set(cfg.methods) & set(POOL_METHODS) else 1
    groups = _groups(rows)
    if missing := [pid for pid in groups if pid not in levels]:
        raise InputError(f"{rollouts}: problem {missing[0]} is not in {problems}")
    chosen = []
    for pid in spread_over_levels(sorted(groups), levels, cfg.problems):
        group = groups[pid]
        if len(group) < need:
            raise InputError(
                f"{rollouts}: problem {pid} has {len(group)} rollouts, best-of-N at budget "
                f"{need} needs {need} (raise rollout.sampling.n or lower search.budgets)"
            )
        first = group[0]
        chosen.append(Problem(pid, levels[pid], first["question"], first["prompt"], first["gold"],
                              sorted(group, key=lambda r: r["sample_idx"])))  # fmt: skip
    detect_format(prm)  # reads config and card only: a base model is refused before loading
    return chosen


def spread_over_levels(
    pids: Sequence[str], levels: Mapping[str, int | None], count: int
) -> list[str]:
    """`count` problem ids taken in turn from each difficulty level (levels ascending, unknown
    last; ids in the given order within a level), so that the compute-optimal table has every
    level the split holds; returned in the given order."""
    by_level: dict[Any, list[str]] = defaultdict(list)
    for pid in pids:
        by_level[levels[pid]].append(pid)
    queues = [by_level[lv] for lv in sorted(by_level, key=lambda lv: (lv is None, lv or 0))]
    picked: set[str] = set()
    while len(picked) < min(count, len(pids)):
        for queue in queues:
            if queue and len(picked) < count:
                picked.add(queue.pop(0))
    return [pid for pid in pids if pid in picked]


def run(
    cfg: SearchStageConfig,
    base: BaseConfig,
    *,
    problems: Path,
    rollouts: Path,
    policy: Path,
    prm: Path,
    out: Path,
) -> dict[str, Any]:
    """Stage `search`: every method at every budget on `cfg.problems` problems spread over the
    difficulty levels, shard by shard (a rerun with the same params and inputs resumes); writes
    out/records.arrow, metrics.json, curve.json and curve.png (`budget_report`), built in
    `<out>.partial` and renamed to `out` when whole.
    `cfg.problems` 0 writes empty outputs without reading an input. Returns the run summary."""
    from rwpipe import artifacts

    chosen = check_inputs(cfg, problems=problems, rollouts=rollouts, policy=policy,
                          prm=prm) if cfg.problems else []  # fmt: skip
    fingerprint: dict[str, Any] = {"base": base, "search": cfg}
    if chosen:
        fingerprint |= {name: artifacts.path_digest(path) for name, path in
                        (("problems", problems), ("rollouts", rollouts), ("policy", policy),
                         ("prm", prm))}  # fmt: skip
    # Everything is built in a sibling directory (its shards included) and renamed to `out` at
    # the end: a killed run leaves no `out`, only what the rerun resumes from.
    staging = out.with_name(out.name + ".partial")
    store = artifacts.ShardStore(staging / "records.arrow", "search_records", fingerprint)
    size = cfg.shard_size
    shards = [chosen[i : i + size] for i in range(0, len(chosen), size)]
    done = store.done()
    todo = [i for i in range(len(shards)) if i not in done]
    if todo:
        try:
            _search_shards(shards, todo, store, cfg, base, policy=policy, prm=prm)
        except InputError:  # refused before any shard was searched: leave nothing behind
            if not store.done():
                import shutil

                shutil.rmtree(staging, ignore_errors=True)
            raise
    stats = store.stats()
    summary = {"problems": len(chosen), "shards": len(shards), "resumed_shards": len(done),
               "tokens": sum(s["tokens"] for s in stats)}  # fmt: skip
    if any("verifier_tokens" in s for s in stats):  # a generative PRM's sampled critiques
        summary["verifier_tokens"] = sum(s.get("verifier_tokens", 0) for s in stats)
    kinds = sorted({s["score_kind"] for s in stats})
    table = store.finish(len(shards), section="search", config=cfg, stats=summary)
    metrics = summarize(table.to_pylist(), cfg, seed=base.seed) | {"score_kind": ",".join(kinds)}
    if "verifier_tokens" in summary:  # shared by every method's scoring: a total, not per point
        metrics["verifier_tokens"] = summary["verifier_tokens"]
    from rwpipe.eval.budget_report import write_outputs

    write_outputs(staging, metrics)
    with artifacts.atomic_path(out) as whole:  # replaces an older `out`
        staging.rename(whole)
    return summary


def _search_shards(
    shards: list[list[Problem]], todo: list[int], store: Any, cfg: SearchStageConfig,
    base: BaseConfig, *, policy: Path, prm: Path,
) -> None:  # fmt: skip
    """Load the PRM and the policy, and search the shards in `todo` into `store`."""
    from rwpipe.eval.metrics import score_kind, undefined
    from rwpipe.progress import progress_bar

    scorer = _load_scorer(prm, base, cfg.dtype)
    voting = bool(cfg.critique_votes) and getattr(scorer, "kind", "") == "generative_prm"
    if voting:
        scorer = _load_voter(prm, cfg, base)
    kind = score_kind(getattr(scorer, "kind", "prm"))
    if (reason := undefined(cfg.aggregation, kind)) is not None:
        raise InputError(f"{prm}: search.aggregation {cfg.aggregation}: {reason}")

    def score(questions, prompts, step_lists):
        from rwpipe.steps import Solution

        sols = [Solution(q, p, s) for q, p, s in zip(questions, prompts, step_lists, strict=True)]
        return [steps for _, steps in scorer.score(sols, cfg.batch_size)]

    trees = bool(set(cfg.methods) & set(TREE_METHODS))
    rule = StepRule.from_config(base)
    resumed = sum(len(s) for i, s in enumerate(shards) if i not in todo)
    generator = None
    try:
        generator = _load_policy(policy, cfg, base) if trees else None
        with progress_bar(sum(map(len, shards)), "search", "problems",
                          completed=resumed) as advance:  # fmt: skip
            for i in todo:
                seed = stable_seed(base.seed, "search", i)
                before = scorer.stats()["generated_tokens"] if voting else 0
                rows = search_shard(shards[i], generator, score, cfg, kind=kind, seed=seed,
                                    rule=rule)  # fmt: skip
                tokens = sum(r["tokens"] for r in rows)
                stats = {"tokens": tokens, "score_kind": kind}
                if voting:  # the critiques this shard sampled
                    stats["verifier_tokens"] = scorer.stats()["generated_tokens"] - before
                store.write(i, records_table(rows), stats)
                advance(len(shards[i]), tokens)
    finally:
        if generator is not None:
            generator.close()
        if voting:
            scorer.close()


def _load_scorer(prm: Path, base: BaseConfig, dtype: str = "auto") -> Any:
    from rwpipe.runtime import pick_device, resolve_dtype
    from rwpipe.score import Scorer

    device = pick_device(base.device)
    return Scorer(prm, device=device, dtype=resolve_dtype(dtype, device))


def _load_voter(prm: Path, cfg: SearchStageConfig, base: BaseConfig) -> Any:
    """A generative PRM scored by the vote over `cfg.critique_votes` sampled critiques."""
    from rwpipe.score import VoteScorer

    return VoteScorer(prm, cfg.engine, k=cfg.critique_votes, temperature=cfg.critique_temperature,
                      max_new_tokens=cfg.critique_max_new_tokens, device=base.device,
                      seed=base.seed)  # fmt: skip


def _load_policy(policy: Path, cfg: SearchStageConfig, base: BaseConfig) -> Any:
    from rwpipe.backends import load_engine

    return load_engine(policy, cfg.engine, device=base.device, seed=base.seed)


def records_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """`search_records` rows as a table of the declared schema."""
    import pyarrow as pa

    from rwpipe.schemas import SEARCH_RECORDS

    return pa.Table.from_pylist(list(rows), schema=SEARCH_RECORDS.schema)
