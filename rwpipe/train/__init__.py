"""Reward-model training: outcome RMs (Bradley-Terry or pointwise) and PRMs (discriminative on
step labels, implicit from outcome labels, or generative: supervised fine-tuning on critiques
of the step labels, loss on the critique's tokens only), on labels.arrow.

`train_reward_model` is the whole stage: examples from the labels, a held-out set of problems,
`fit` (resumable), an evaluation each epoch, and the final model saved as a plain transformers
directory (LoRA merged) with `rwpipe-model.json` (kind, step tag, beta, data, params, metrics).
An implicit PRM also carries its reference model, the base weights as trained against, in
`reference/` (sha256 in the card's `reference`): scoring needs both (`backbone.load_saved`).
"""

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rwpipe.artifacts import config_to_dict
from rwpipe.config import TrainPRMConfig, TrainRMConfig
from rwpipe.errors import InputError
from rwpipe.progress import progress_bar
from rwpipe.runtime import resolve_dtype, seed_everything
from rwpipe.train.backbone import Backbone, load_backbone, save_backbone
from rwpipe.train.data import (
    Example,
    critique_examples,
    outcome_examples,
    pair_items,
    preference_pairs,
    prm_examples,
    split_by_group,
)
from rwpipe.train.loop import Checkpointer, TrainState, fit, is_main_process, process_device
from rwpipe.train.metrics import accuracy, bootstrap_ci, roc_auc

__all__ = ["evaluate_backbone", "run", "train_reward_model"]


def _score(backbone: Backbone, examples: list[Example], batch_size: int) -> list[tuple]:
    out = []
    for i in range(0, len(examples), batch_size):
        out.extend(backbone.score(examples[i : i + batch_size]))
    return out


def _with_ci(name: str, fn, *arrays) -> dict[str, float]:
    value = fn(*arrays)
    lo, hi = bootstrap_ci(fn, *arrays)
    return {name: round(value, 4), f"{name}_ci95_lo": round(lo, 4), f"{name}_ci95_hi": round(hi, 4)}


def evaluate_backbone(
    backbone: Backbone, examples: list[Example], batch_size: int, seed: int = 0
) -> dict[str, Any]:
    """Held-out metrics with 95% bootstrap intervals.

    Step level (PRMs, where step labels exist): AUC of the step score against the hard label,
    accuracy at 0.5 (discriminative). Outcome level: AUC of the solution score against the
    outcome; for the ORM also pairwise accuracy on held-out (correct, incorrect) pairs.
    """
    if not examples:
        return {}
    scores = _score(backbone, examples, batch_size)
    out: dict[str, Any] = {"eval_solutions": len(examples)}
    steps, truth = [], []
    for (_, step_scores), e in zip(scores, examples, strict=True):
        for s, t in zip(step_scores, e.step_targets, strict=False):
            if t is not None:
                steps.append(s)
                truth.append(int(t > 0))  # soft MC target: positive when > 0
    if steps:
        out["eval_steps"] = len(steps)
        out |= _with_ci("step_auc", roc_auc, steps, truth)
        if backbone.kind in ("prm", "generative_prm"):
            out |= _with_ci("step_accuracy", accuracy, steps, truth)
    known = [
        (s[0], e.outcome) for s, e in zip(scores, examples, strict=True) if e.outcome is not None
    ]
    if known:
        out |= _with_ci("outcome_auc", roc_auc, *zip(*known, strict=True))
    if backbone.kind == "orm":
        by_key = {e.key: s[0] for s, e in zip(scores, examples, strict=True)}
        pairs = preference_pairs(examples, per_problem=16, seed=seed)
        if pairs:
            wins = np.array([by_key[a.key] > by_key[b.key] for a, b in pairs], float)
            out["eval_pairs"] = len(pairs)
            out |= _with_ci("pairwise_accuracy", np.mean, wins)
    return out


def run(
    cfg: TrainRMConfig | TrainPRMConfig, base: Any, *, labels: Path, base_model: Path, out: Path,
    report_dir: Path | None = None, pairs: Path | None = None, critiques: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Stages `train_rm` / `train_prm` (which one: the type of `cfg`): train on LABELS (and
    PAIRS for a Bradley-Terry ORM), save the model to OUT, write the report; the metrics.

    A rerun after a kill resumes from the last checkpoint when params and inputs are the same.
    """
    from rwpipe import artifacts
    from rwpipe.train.report import write_report

    table = artifacts.read_artifact(labels, "labels")
    if table.num_rows == 0:
        raise InputError(f"{labels}: no rows")
    artifacts.check_model_dir(base_model)
    pairs_table = artifacts.read_artifact(pairs, "pairs") if pairs is not None else None
    generative = isinstance(cfg, TrainPRMConfig) and cfg.kind == "generative"
    critique_table = (artifacts.read_artifact(critiques, "critiques")
                      if critiques is not None and generative else None)  # fmt: skip
    section = "train_rm" if isinstance(cfg, TrainRMConfig) else "train_prm"
    stamp = {
        "base": base,
        section: cfg,
        "labels": artifacts.path_digest(labels),
        "model": artifacts.path_digest(base_model),
        "pairs": artifacts.path_digest(pairs) if pairs is not None else None,
        "critiques": artifacts.path_digest(critiques) if critique_table is not None else None,
    }
    fingerprint = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode())
    state, metrics = train_reward_model(
        table, base_model, out, cfg, seed=base.seed, device=base.device,
        where=str(critiques if critique_table is not None else labels),
        fingerprint=fingerprint.hexdigest(), pairs=pairs_table, critiques=critique_table,
    )  # fmt: skip
    if is_main_process():
        write_report(report_dir or out.with_name(out.name + ".report"), state, metrics)
    return metrics


def _kind(cfg: TrainRMConfig | TrainPRMConfig) -> tuple[str, str, str, float]:
    """(model kind, objective, step tag, beta) of a train_rm / train_prm section."""
    if isinstance(cfg, TrainRMConfig):
        return "orm", cfg.loss, "", 0.0
    if cfg.kind == "implicit":
        return "implicit_prm", "implicit", "", cfg.beta
    if cfg.kind == "generative":
        return "generative_prm", "sft", "", 0.0
    return "prm", "step", cfg.step_tag, 0.0


def train_reward_model(
    labels: pa.Table,
    base_dir: Path,
    out_dir: Path,
    cfg: TrainRMConfig | TrainPRMConfig,
    *,
    seed: int,
    device: str,
    where: str,
    fingerprint: str,
    stop_after_steps: int | None = None,
    pairs: pa.Table | None = None,
    critiques: pa.Table | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Train and save one reward model; returns the training state and the final metrics.

    Raises:
        InputError: the labels hold nothing this model can learn from (no step labels for a
            discriminative PRM, no correct/incorrect pair for Bradley-Terry, one class only).
    """
    torch_device = process_device(device)
    seed_everything(seed)
    kind, objective, tag, beta = _kind(cfg)
    backbone = load_backbone(
        base_dir,
        kind,
        device=torch_device,
        dtype=resolve_dtype(cfg.dtype, torch_device),
        lora=cfg.lora,
        step_tag=tag,
        beta=beta or 0.05,
        gradient_checkpointing=cfg.optim.gradient_checkpointing,
        pad_multiple=cfg.optim.pad_to_multiple_of,
    )
    rows = [r for r in labels.to_pylist() if r["split"] == "train"]
    if critiques is not None:  # a generative PRM's targets, as written by `rwpipe critiques`
        rows = [r for r in critiques.to_pylist() if r["split"] == "train"]
    examples = _examples(rows, backbone, kind, cfg, where)
    train, held = split_by_group(examples, [e.group for e in examples], cfg.eval_fraction, seed)
    items, lengths = _items(objective, train, pairs, backbone, cfg, seed, where)
    ckpt = Checkpointer(out_dir.with_name(out_dir.name + ".parts"), fingerprint)
    total = len(items) * cfg.optim.epochs
    with progress_bar(total, f"train {kind}", "examples") as advance:
        state = fit(
            backbone,
            items,
            lengths,
            objective=objective,
            optim=cfg.optim,
            seed=seed,
            checkpointer=ckpt,
            evaluate=lambda: evaluate_backbone(backbone, held, cfg.optim.batch_size, seed),
            advance=advance,
            stop_after_steps=stop_after_steps,
        )
    if stop_after_steps is not None and state.epoch < cfg.optim.epochs:
        return state, {}
    metrics = {
        "kind": kind,
        "objective": objective,
        "train_items": len(items),
        "heldout_solutions": len(held),
        "steps": state.step,
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "train_tokens": state.tokens,
        "train_seconds": round(state.seconds, 1),
        "train_tokens_per_s": round(state.tokens / state.seconds, 1) if state.seconds else 0.0,
        "dtype": str(next(backbone.model.parameters()).dtype).removeprefix("torch."),
    } | (state.evals[-1] if state.evals else {})
    card = {"base_model": str(base_dir), "params": config_to_dict(cfg), "metrics": metrics,
            "data": where}  # fmt: skip
    if is_main_process():  # under a launcher every process holds the same model: rank 0 saves
        save_backbone(backbone, out_dir, card)  # atomic: the old directory stands until then
        shutil.rmtree(ckpt.dir, ignore_errors=True)
    return state, metrics


def _examples(rows: list[dict], backbone: Backbone, kind: str,
              cfg: TrainRMConfig | TrainPRMConfig, where: str) -> list[Example]:  # fmt: skip
    """Training examples of the train split's rows: step-labelled solutions for a
    discriminative PRM, else outcome-labelled ones (with their step labels, where annotate
    made them, so an implicit PRM's steps can be evaluated)."""
    max_len = cfg.optim.max_length
    if kind == "generative_prm":
        examples = critique_examples(rows, backbone.tokenizer, max_length=max_len)
        if not examples:
            raise InputError(f"{where}: no solution with step labels up to its first error in "
                             "the train split (annotate.method?)")  # fmt: skip
        return examples
    if kind == "prm":
        examples = prm_examples(rows, backbone.tokenizer, soft=cfg.targets == "soft",
                                step_tag=cfg.step_tag, max_length=max_len)  # fmt: skip
        if not examples:
            raise InputError(f"{where}: no step labels in the train split (annotate.method?)")
        return examples
    examples = outcome_examples(rows, backbone.tokenizer, max_length=max_len)
    steps = {e.key: e for e in prm_examples(rows, backbone.tokenizer, soft=False, step_tag="",
                                            max_length=max_len)}  # fmt: skip
    for e in examples:
        if e.key in steps and len(steps[e.key].input_ids) == len(e.input_ids):
            e.step_ends, e.step_targets = steps[e.key].step_ends, steps[e.key].step_targets
    return examples


def _items(objective: str, train: list[Example], pairs: pa.Table | None, backbone: Backbone,
           cfg: Any, seed: int, where: str) -> tuple[list[Any], list[int]]:  # fmt: skip
    """What `fit` iterates over, and each item's length in tokens: (chosen, rejected[, margin])
    pairs for Bradley-Terry (from a pairs artifact, or drawn from `train`), else examples."""
    if objective == "bt" and pairs is not None:  # a pairs artifact (rwpipe pairs)
        rows_p = [p for p in pairs.to_pylist() if p["split"] == "train"]
        every = pair_items(rows_p, backbone.tokenizer, max_length=cfg.optim.max_length)
        items, _ = split_by_group(every, [a.group for a, _, _ in every], cfg.eval_fraction, seed)
        if not items:
            raise InputError(f"{where}: no train-split pairs left after holding out problems")
        return items, [len(a) + len(b) for a, b, _ in items]
    if objective == "bt":
        items = preference_pairs(train, cfg.pairs_per_problem, seed)
        if not items:
            raise InputError(f"{where}: no problem has both a correct and an incorrect rollout")
        return items, [len(a) + len(b) for a, b in items]
    outcomes = {e.outcome for e in train}
    if objective not in ("step", "sft") and len(outcomes) < 2:
        raise InputError(f"{where}: every train rollout has the same outcome {outcomes}")
    if not train:
        raise InputError(f"{where}: nothing left to train on after holding out problems")
    return list(train), [len(e) for e in train]
