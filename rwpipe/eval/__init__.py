"""Evaluation: policy accuracy, reward-model metrics and test-time selection curves.

`run` is the eval stage in one call: it checks the inputs (before any model loads), scores the
rollouts with each reward model, runs PRM-guided beam search (`search`) and ProcessBench for
the PRM and an LLM critic (`processbench`), computes pairwise accuracy and the selection
curves (`curves`), tests the claims the run can show (`claims`), and writes metrics.json,
bon.csv, bon.png and report.md (`report`).
torch and the engines are imported inside the functions that need them, so importing this
package stays light (`rwpipe --help` imports it).
"""

from pathlib import Path
from typing import Any, NamedTuple

from rwpipe.config import BaseConfig, EvalConfig
from rwpipe.errors import InputError
from rwpipe.steps import StepRule

Key = tuple[str, int]  # (problem_id, sample_idx)
Scores = dict[Key, tuple[float | None, list[float]]]


class Inputs(NamedTuple):
    """The checked inputs of one eval run."""

    rows: list[dict[str, Any]]  # the split's rollouts
    rl_rows: list[dict[str, Any]] | None  # the RL policy's, if given
    models: dict[str, Path]  # "orm" / "prm" -> model directory
    subsets: dict[str, list[dict[str, Any]]] | None  # ProcessBench subsets, if configured
    tune: list[dict[str, Any]] | None  # ProcessBench items to tune the PRM threshold on
    prmbench: list[dict[str, Any]] | None = None  # PRMBench items, if configured
    search_budget: dict[str, Any] | None = None  # the search stage's metrics, if given


def run(
    cfg: EvalConfig,
    base: BaseConfig,
    *,
    rollouts: Path,
    out: Path,
    orm: Path | None = None,
    prm: Path | None = None,
    rl_rollouts: Path | None = None,
    policy: Path | None = None,
    critic: Path | None = None,
    search_budget: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a policy's rollouts and the reward models; write metrics.json, bon.csv,
    bon.png and report.md to `out`.

    Args:
        cfg: the eval section.
        base: the base section (seed, device, step rule).
        rollouts: the policy's rollouts artifact; its `cfg.split` rows are evaluated.
        out: the output directory.
        orm, prm: reward model directories to score the rollouts with.
        rl_rollouts: the RL policy's rollouts on the same split, compared with the base.
        policy: the policy model for PRM-guided beam search (with `cfg.search.problems`).
        critic: a local model to evaluate as a ProcessBench critic.
        search_budget: the search stage's metrics.json (every method at every budget),
            copied into metrics (`search_budget`) and the report.

    Returns:
        The metrics, as written to metrics.json (`best_of_n_size` is the largest N).

    Raises:
        InputError: a bad input, before any model loads.
    """
    inputs = check_inputs(cfg, rollouts, rl_rollouts=rl_rollouts, orm=orm, prm=prm, policy=policy,
                          search_budget=search_budget)  # fmt: skip
    rule = StepRule.from_config(base)
    from rwpipe.eval.claims import claims
    from rwpipe.eval.curves import pairwise_table, selection_curves, skipped_rules
    from rwpipe.eval.report import write_outputs
    from rwpipe.runtime import seed_everything

    seed_everything(base.seed)
    metrics = _policy_metrics(inputs.rows, inputs.rl_rows, cfg.ns)
    scores: dict[str, Scores] = {}
    kinds: dict[str, str] = {}  # name -> score kind (rwpipe.eval.metrics.ScoreKind)
    for name, path in inputs.models.items():
        scores[name], kinds[name], found = _reward_model(
            name, path, inputs, cfg, base, rule, policy
        )
        metrics |= found
    judging = critic is not None or bool(cfg.critic.base_url)
    if judging and cfg.critic.mode == "pairwise":
        metrics["pairwise_judge"] = _pairwise_judge(critic, inputs.rows, cfg, base)
    elif judging and inputs.subsets is not None:
        metrics["processbench_critic"] = _critic(critic, inputs.subsets, cfg, base)
    if scores:
        metrics["score_kinds"] = kinds
        if skipped := skipped_rules(scores, cfg.aggregations, kinds):
            metrics["skipped"] = skipped  # rule -> why it was not computed
        metrics["pairwise"] = pairwise_table(inputs.rows, scores, cfg.aggregations, kinds)
    curves = selection_curves(
        inputs.rows, cfg.ns, scores, cfg.aggregations, cfg.draws, base.seed, kinds
    )
    top = max(c["n"] for c in curves)
    metrics["best_of_n"] = {c["rule"]: c["accuracy"] for c in curves if c["n"] == top}
    metrics["best_of_n_size"] = top
    if inputs.search_budget is not None:
        metrics["search_budget"] = inputs.search_budget
    metrics["claims"] = claims(metrics, curves, list(inputs.models), cfg.aggregations)
    write_outputs(out, metrics, curves, {"base": base, "eval": cfg})
    return metrics


def check_inputs(
    cfg: EvalConfig,
    rollouts: Path,
    *,
    rl_rollouts: Path | None = None,
    orm: Path | None = None,
    prm: Path | None = None,
    policy: Path | None = None,
    search_budget: Path | None = None,
) -> Inputs:
    """Read and check every input of `run`; nothing here loads a model.

    Raises:
        InputError: no rollouts in the split, RL rollouts sharing no problem, search without a
            policy and a PRM, a path that is not a model directory, a bad ProcessBench file,
            an unreadable search metrics file.
    """
    from rwpipe.artifacts import check_model_dir

    rows = _split_rows(rollouts, cfg.split)
    rl_rows = None
    if rl_rollouts is not None:
        rl_rows = _split_rows(rl_rollouts, cfg.split)
        if not {r["problem_id"] for r in rows} & {r["problem_id"] for r in rl_rows}:
            raise InputError(f"{rl_rollouts}: no problem in common with {rollouts}")
    if cfg.search.problems and (policy is None or prm is None):
        raise InputError("eval.search.problems > 0 needs --policy DIR and --prm DIR")
    models = {name: path for name, path in (("orm", orm), ("prm", prm)) if path is not None}
    for path in ([policy] if policy is not None else []) + list(models.values()):
        check_model_dir(path)
    for path in models.values():  # a base model or an unreadable one is refused here
        from rwpipe.score import detect_format

        detect_format(path)
    subsets = tune = None
    if cfg.processbench:
        from rwpipe.eval import processbench  # imports torch (bootstrap intervals)

        subsets = processbench.load_subsets(cfg.processbench, cfg.processbench_max)
        if cfg.threshold_tune and prm is not None:
            tune = [x for v in processbench.load_subsets(cfg.threshold_tune).values() for x in v]
    prm_items = None
    if cfg.prmbench:
        from rwpipe.eval.prmbench import load_prmbench

        prm_items = load_prmbench(cfg.prmbench, cfg.prmbench_max)
    budget = None
    if search_budget is not None:
        from rwpipe.eval.budget_report import read_metrics

        budget = read_metrics(search_budget)
    return Inputs(rows, rl_rows, models, subsets, tune, prm_items, budget)


def _split_rows(path: Path, split: str) -> list[dict[str, Any]]:
    from rwpipe.artifacts import read_artifact

    rows = [r for r in read_artifact(path, "rollouts").to_pylist() if r["split"] == split]
    if not rows:
        raise InputError(f"{path}: no rollouts in split {split}")
    return rows


def _policy_metrics(
    rows: list[dict[str, Any]], rl_rows: list[dict[str, Any]] | None, ns: tuple[int, ...]
) -> dict[str, Any]:
    """pass@k of the policy and, given the RL policy's rollouts, of both and their difference."""
    from rwpipe.eval.curves import compare_policies, policy_accuracy

    metrics: dict[str, Any] = {"policy": policy_accuracy(rows, ns)}
    if rl_rows is not None:
        metrics["policy_rl"] = policy_accuracy(rl_rows, ns)
        metrics["rl_vs_base"] = compare_policies(rows, rl_rows)
    return metrics


def _reward_model(
    name: str, path: Path, inputs: Inputs, cfg: EvalConfig, base: BaseConfig, rule: StepRule,
    policy: Path | None,
) -> tuple[Scores, str, dict[str, Any]]:  # fmt: skip
    """Score the rollouts with one reward model; for the PRM, also run the search, ProcessBench
    and PRMBench while it is loaded. Returns its scores by key, their kind
    (`rwpipe.eval.metrics.score_kind`) and the metrics found.

    Raises:
        InputError: beam search asked with an aggregation undefined for the PRM's scores.
    """
    from rwpipe.runtime import pick_device, resolve_dtype
    from rwpipe.score import Scorer, VoteScorer

    device = pick_device(base.device)
    scorer: Any = Scorer(path, device=device, dtype=resolve_dtype(cfg.dtype, device))
    vote = None
    if name == "prm" and cfg.critique_votes and scorer.kind == "generative_prm":
        vote = scorer = VoteScorer(
            path, cfg.search.engine, k=cfg.critique_votes, temperature=cfg.critique_temperature,
            max_new_tokens=cfg.critique_max_new_tokens, device=base.device, seed=base.seed,
        )  # fmt: skip
    try:
        scores, kind, metrics = _score_with(name, scorer, inputs, cfg, base, rule, policy)
        if vote is not None:
            metrics["prm_scoring"] = vote.stats()
        return scores, kind, metrics
    finally:
        if vote is not None:
            vote.close()


def _score_with(
    name: str, scorer: Any, inputs: Inputs, cfg: EvalConfig, base: BaseConfig, rule: StepRule,
    policy: Path | None,
) -> tuple[Scores, str, dict[str, Any]]:  # fmt: skip
    """`_reward_model`'s work with a loaded scorer."""
    from rwpipe.eval.metrics import score_kind, undefined
    from rwpipe.score import score_rows

    kind = score_kind(scorer.kind)
    searching = name == "prm" and cfg.search.problems > 0 and policy is not None
    if searching and (reason := undefined(cfg.search.aggregation, kind)):
        raise InputError(f"eval.search.aggregation {cfg.search.aggregation}: {reason}")
    got = score_rows(scorer, inputs.rows, cfg.batch_size, f"score ({name})")
    scores = {(r["problem_id"], r["sample_idx"]): s for r, s in zip(inputs.rows, got, strict=True)}
    metrics: dict[str, Any] = {}
    if searching:
        metrics["search"] = _search(scorer, policy, inputs.rows, scores, cfg, base, rule)
    if name == "prm" and inputs.subsets is not None:
        metrics |= _processbench(scorer, inputs, cfg, rule)
    if name == "prm" and inputs.prmbench is not None:
        from rwpipe.eval import prmbench

        metrics["prmbench"] = prmbench.evaluate(scorer, inputs.prmbench, cfg.threshold,
                                                cfg.batch_size, rule)  # fmt: skip
    return scores, kind, metrics


def _search(
    scorer: Any, policy: Path, rows: list[dict[str, Any]], prm_scores: Scores, cfg: EvalConfig,
    base: BaseConfig, rule: StepRule,
) -> dict[str, Any]:  # fmt: skip
    """PRM-guided beam search with the policy's engine, against PRM best-of-N."""
    from rwpipe.backends import load_engine
    from rwpipe.eval.search import evaluate_search

    generator = load_engine(policy, cfg.search.engine, device=base.device, seed=base.seed)
    try:
        return evaluate_search(
            rows, generator, scorer, prm_scores, cfg.search, seed=base.seed, rule=rule,
            draws=cfg.draws, batch_size=cfg.batch_size,
        )  # fmt: skip
    finally:
        generator.close()


def _processbench(scorer: Any, inputs: Inputs, cfg: EvalConfig, rule: StepRule) -> dict:
    """ProcessBench for the PRM on every subset, at the fixed or the tuned threshold
    (metrics key `processbench`), beside the rules that read no step
    (`processbench_baselines`, `processbench.baseline_predictions`); and the PRM's F1 minus
    the outcome rule's over all subsets' solutions, with a paired interval
    (`processbench_vs_outcome_rule`, where every item records its final answer's verdict)."""
    from rwpipe.eval import processbench

    threshold, how = cfg.threshold, ""
    if inputs.tune is not None:
        scored = processbench.score_items(scorer, inputs.tune, cfg.batch_size, rule)
        threshold, f1 = processbench.tune_threshold(scored, [x["label"] for x in inputs.tune])
        how = (f"tuned on {cfg.threshold_tune} ({len(inputs.tune)} solutions, "
               f"F1 {f1:.3f}): {threshold:.4g}")  # fmt: skip
    per, baselines = {}, {}
    prm_pred: list[int] = []
    outcome_pred: list[int] = []
    every_outcome = True  # every subset records its items' final-answer verdicts
    labels: list[int] = []
    for name, items in (inputs.subsets or {}).items():
        y = [int(x["label"]) for x in items]
        pred = processbench.predict(scorer, items, threshold, cfg.batch_size, rule)
        per[name] = processbench.protocol(pred, y) | {
            "threshold": threshold, "threshold_rule": how or f"fixed {threshold}"
        }  # fmt: skip
        rules = processbench.baseline_predictions(items)
        baselines[name] = {r: processbench.protocol(p, y) for r, p in rules.items()}
        every_outcome = every_outcome and "outcome rule" in rules
        outcome_pred += rules.get("outcome rule", [])
        prm_pred += pred
        labels += y
    out: dict[str, Any] = {
        "processbench": per | {"average": processbench.average_subsets(per)},
        "processbench_baselines": baselines,
    }
    if every_outcome:
        out["processbench_vs_outcome_rule"] = processbench.paired_f1_difference(
            prm_pred, outcome_pred, labels
        )
    return out


def _judge_backend(critic: Path | None, cfg: EvalConfig, base: BaseConfig) -> tuple[Any, Any]:
    """The critic: `eval.critic`'s server, else the local model `critic` on its own engine
    (returned second, for the caller to close)."""
    from rwpipe.backends import load_engine
    from rwpipe.judge import LocalJudge, OpenAIJudge

    if cfg.critic.base_url:
        return OpenAIJudge.from_config(cfg.critic), None
    generator = load_engine(critic, cfg.search.engine, device=base.device, seed=base.seed)
    return LocalJudge(generator), generator


def _pairwise_judge(critic: Path | None, rows: list[dict[str, Any]], cfg: EvalConfig,
                    base: BaseConfig) -> dict[str, Any]:  # fmt: skip
    """RewardBench-style accuracy of a pairwise judge on the rollouts' (correct, incorrect)
    pairs, both orders asked (`rwpipe.eval.judge_pairs`)."""
    from rwpipe.eval.judge_pairs import correct_incorrect_pairs, pairwise_judge_accuracy
    from rwpipe.judge import judge_pairs

    pairs = correct_incorrect_pairs(rows)
    backend, generator = _judge_backend(critic, cfg, base)
    j = cfg.critic
    try:
        judged = judge_pairs(backend, [(q, a, b) for _, q, a, b in pairs], k=j.k,
                             temperature=j.temperature, max_tokens=j.max_new_tokens,
                             seed=base.seed)  # fmt: skip
    finally:
        if generator is not None:
            generator.close()
    return pairwise_judge_accuracy([p for p, *_ in pairs], judged, base.seed)


def _critic(critic: Path | None, subsets: dict, cfg: EvalConfig, base: BaseConfig) -> dict:
    """ProcessBench for an LLM critic: a local model (`critic`) or `eval.critic.base_url`."""
    from rwpipe.eval import processbench

    j = cfg.critic
    backend, generator = _judge_backend(critic, cfg, base)
    try:
        per = {
            k: processbench.evaluate_critic(backend, v, k=j.k, temperature=j.temperature,
                                            max_tokens=j.max_new_tokens, seed=base.seed)
            for k, v in subsets.items()
        }  # fmt: skip
    finally:
        if generator is not None:
            generator.close()
    return per | {"average": processbench.average_subsets(per)}
