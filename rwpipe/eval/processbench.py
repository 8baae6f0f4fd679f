"""ProcessBench protocol for any PRM: the first step scored below a threshold is the predicted
error (-1 if none), compared with the human label; accuracy on erroneous and on correct
solutions and their harmonic mean (F1), with 95% bootstrap intervals.

ProcessBench items list their steps without separators; they are written out as steps of the
pipeline's step rule (`StepRule.join_bare`), so a PRM sees them as it saw its training steps.

Where the items come from (`eval.processbench`, comma-separated): `sample` (the 150 + 150 GSM8K
and MATH items shipped as package data, `processbench_sample/README.md` says which and why) or
`sample:gsm8k`, a hub split `hf:Qwen/ProcessBench:gsm8k`, or a local ProcessBench-format file.

Beside every PRM or critic the report shows rules that read no step: never flag, always flag
step 0, and the outcome rule (flag step 0 exactly when the final answer is wrong, from the
items' `final_answer_correct`), which a critic must beat to show it finds *where* a solution
goes wrong rather than *whether* it does.
"""

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from rwpipe.errors import InputError
from rwpipe.eval.metrics import first_error, processbench
from rwpipe.steps import StepRule
from rwpipe.train.metrics import bootstrap_ci

FIELDS = ("problem", "steps", "label")
BOOTSTRAP_CI = "percentile bootstrap over solutions, 1000 resamples"  # bootstrap_ci's defaults
PAIRED_F1_CI = (
    "paired percentile bootstrap over solutions, 1000 resamples (both F1s recomputed on each)"
)
SAMPLE_SUBSETS = ("gsm8k", "math")  # shipped under processbench_sample/
BASELINES = ("never flag", "always flag step 0", "outcome rule")


def load_processbench(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Items of a ProcessBench-format JSON (or JSONL) file: problem, steps, label (-1: none);
    `limit` of them (0 = all) as `subsample` picks them.

    Raises:
        InputError: unreadable file, or an item without the fields or with a bad label.
    """
    path = Path(path)
    try:
        text = path.read_text()
        items = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable ProcessBench JSON file: {exc}") from None
    return _checked(path, items, limit)


def _checked(path: Any, items: list[Any], limit: int) -> list[dict[str, Any]]:
    """`items` if each has the fields and a label in range (first `limit`; 0 = all)."""
    for i, x in enumerate(items):
        if not isinstance(x, dict) or any(k not in x for k in FIELDS):
            raise InputError(f"{path}: item {i} lacks one of the fields {', '.join(FIELDS)}")
        if not isinstance(x["steps"], list) or not -1 <= int(x["label"]) < len(x["steps"]):
            raise InputError(f"{path}: item {i} has label {x['label']} for {len(x['steps'])} steps")
    if not items:
        raise InputError(f"{path}: no items")
    return subsample(items, limit)


def subsample(items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """`limit` items (0 = all) picked by the order of sha256 of each item's id (its problem text
    where it has none), kept in file order: a fixed random subset. The first `limit` lines
    would not do: ProcessBench files list their erroneous solutions before the correct ones,
    so a prefix can hold no correct solution at all (and ProcessBench F1 is then undefined)."""
    if not limit or limit >= len(items):
        return items

    def key(i: int) -> str:
        x = items[i]
        return hashlib.sha256(str(x.get("id", x["problem"])).encode()).hexdigest()

    keep = set(sorted(range(len(items)), key=key)[:limit])
    return [x for i, x in enumerate(items) if i in keep]


def score_items(
    scorer: Any, items: list[dict[str, Any]], batch_size: int = 8, rule: StepRule | None = None
) -> list[list[float]]:
    """Each item's step scores under `scorer` (rwpipe.score.Scorer), its steps joined under
    `rule` (default: blank lines); a step cut by the scorer's max_length has no score and
    cannot be flagged."""
    from rwpipe.backends import apply_chat_template
    from rwpipe.progress import progress_bar
    from rwpipe.score import Solution

    rule = rule if rule is not None else StepRule()
    tokenizer = getattr(getattr(scorer, "backbone", None), "tokenizer", None)
    solutions = [
        Solution(
            x["problem"],
            apply_chat_template(tokenizer, x["problem"]) if tokenizer is not None else "",
            rule.join_bare(x["steps"]),
        )
        for x in items
    ]
    with progress_bar(len(solutions), "score (ProcessBench)", "solutions") as advance:
        return [list(steps) for _, steps in scorer.score(solutions, batch_size, advance)]


def tune_threshold(step_scores: list[list[float]], labels: list[int]) -> tuple[float, float]:
    """The threshold with the best ProcessBench F1 on a tuning split, and that F1.

    Candidates are every distinct step score (a step is flagged when its score is strictly
    below the threshold) and one above the largest (flag every solution's first step); ties go
    to the smallest threshold, the most conservative critic.
    """
    values = sorted({s for steps in step_scores for s in steps})
    if not values:
        raise InputError("threshold tuning: no scored steps in the tuning split")
    if all(y == -1 for y in labels) or all(y != -1 for y in labels):
        raise InputError("threshold tuning: the split needs both erroneous and correct solutions")
    candidates = [*values, values[-1] + 1e-6]
    best = (-1.0, 0.0)
    for t in candidates:
        f1 = processbench([first_error(s, t) for s in step_scores], labels)["f1"]
        if f1 > best[0]:
            best = (f1, t)
    return best[1], best[0]


def protocol(pred: list[int], labels: list[int]) -> dict[str, Any]:
    """ProcessBench accuracies and F1 with 95% bootstrap intervals."""
    out: dict[str, Any] = {"solutions": len(labels), "ci_method": BOOTSTRAP_CI}
    for name, value in processbench(pred, labels).items():
        lo, hi = bootstrap_ci(lambda p, y, k=name: processbench(p, y)[k], pred, labels)
        out |= {name: value, f"{name}_lo": lo, f"{name}_hi": hi}
    return out


def predict(
    scorer: Any, items: list[dict[str, Any]], threshold: float, batch_size: int = 8,
    rule: StepRule | None = None,
) -> list[int]:  # fmt: skip
    """Each item's predicted first error: its first step scored below `threshold` (-1: none)."""
    return [first_error(s, threshold) for s in score_items(scorer, items, batch_size, rule)]


def evaluate(
    scorer: Any, items: list[dict[str, Any]], threshold: float, batch_size: int = 8,
    threshold_rule: str = "", rule: StepRule | None = None,
) -> dict:  # fmt: skip
    """Score every item's steps (joined under the step `rule`) with `scorer` and apply the
    protocol at `threshold`; `threshold_rule` records where the threshold came from (default:
    fixed)."""
    pred = predict(scorer, items, threshold, batch_size, rule)
    out = protocol(pred, [int(x["label"]) for x in items])
    return out | {"threshold": threshold, "threshold_rule": threshold_rule or f"fixed {threshold}"}


def evaluate_critic(
    backend: Any, items: list[dict[str, Any]], *, k: int = 1, temperature: float = 0.0,
    max_tokens: int = 512, seed: int = 0,
) -> dict:  # fmt: skip
    """The same protocol for an LLM critic (`rwpipe.judge` critique mode): the judge's first
    wrong paragraph against the human label. An abstention (unparseable, out of range, a tie)
    counts as a wrong prediction on both kinds of solution, as in ProcessBench."""
    from rwpipe.judge import judge_first_errors

    got = judge_first_errors(
        backend, [(x["problem"], x["steps"]) for x in items], k=k, temperature=temperature,
        max_tokens=max_tokens, seed=seed,
    )  # fmt: skip
    pred = [-2 if g.value is None else int(g.value) for g in got]
    out = protocol(pred, [int(x["label"]) for x in items])
    return out | {"abstained": sum(p == -2 for p in pred)}


def average_subsets(results: dict[str, dict]) -> dict[str, float]:
    """ProcessBench's headline: the mean over subsets (gsm8k, math, ...) of each metric."""
    keys = ("acc_erroneous", "acc_correct", "f1")
    return {k: sum(r[k] for r in results.values()) / len(results) for k in keys}


def sample_path(name: str) -> Path:
    """The shipped sample of one ProcessBench subset (package data)."""
    return Path(str(resources.files("rwpipe.eval").joinpath("processbench_sample", f"{name}.json")))


def load_hub(repo: str, split: str, limit: int = 0) -> list[dict[str, Any]]:
    """One split of a ProcessBench-format dataset on the Hugging Face hub (needs network or
    the hub cache), e.g. `Qwen/ProcessBench`, split `gsm8k`."""
    import datasets

    try:
        rows = datasets.load_dataset(repo, split=split).to_list()
    except Exception as exc:  # noqa: BLE001 - any loader failure is one line to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"hf:{repo}:{split}: cannot load: {first}") from None
    return _checked(f"hf:{repo}:{split}", rows, limit)


def load_subsets(spec: str, limit: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Comma-separated ProcessBench sources (see the module docstring), each a subset: the
    shipped samples by their subset name, hub splits by their split, files by their stem.

    Raises:
        InputError: an unknown sample, an unreadable source, two sources of one name.
    """
    out: dict[str, list[dict[str, Any]]] = {}

    def add(name: str, items: list[dict[str, Any]], token: str) -> None:
        if name in out:
            raise InputError(f"eval.processbench: {token}: a second subset named {name!r}")
        out[name] = items

    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token == "sample" or token.startswith("sample:"):
            names = SAMPLE_SUBSETS if token == "sample" else (token.removeprefix("sample:"),)
            for name in names:
                if name not in SAMPLE_SUBSETS:
                    raise InputError(f"eval.processbench: {token}: no shipped sample {name!r} "
                                     f"(shipped: {', '.join(SAMPLE_SUBSETS)})")  # fmt: skip
                add(name, load_processbench(sample_path(name), limit), token)
        elif token.startswith("hf:"):
            repo, _, split = token.removeprefix("hf:").rpartition(":")
            if not repo or not split:
                raise InputError(f"eval.processbench: {token}: expected hf:<dataset>:<split>")
            add(split, load_hub(repo, split, limit), token)
        else:
            add(Path(token).stem, load_processbench(token, limit), token)
    return out


def baseline_predictions(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The rules that read no step (module docstring), as predicted first errors; the outcome
    rule only where every item records `final_answer_correct`."""
    out = {"never flag": [-1] * len(items), "always flag step 0": [0] * len(items)}
    if all("final_answer_correct" in x for x in items):
        out["outcome rule"] = [-1 if x["final_answer_correct"] else 0 for x in items]
    return out


def paired_f1_difference(
    pred_a: list[int], pred_b: list[int], labels: list[int], draws: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """F1(a) - F1(b) on the same solutions, with a paired percentile bootstrap interval."""
    import numpy as np

    a, b, y = (np.asarray(v) for v in (pred_a, pred_b, labels))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(draws):
        idx = rng.integers(0, len(y), len(y))
        d = processbench(a[idx], y[idx])["f1"] - processbench(b[idx], y[idx])["f1"]
        if d == d:
            stats.append(d)
    lo, hi = np.quantile(stats, [0.025, 0.975]) if stats else (float("nan"), float("nan"))
    diff = processbench(pred_a, labels)["f1"] - processbench(pred_b, labels)["f1"]
    return {"estimate": diff, "ci95_lo": float(lo), "ci95_hi": float(hi), "n": len(labels),
            "ci_method": PAIRED_F1_CI}  # fmt: skip
