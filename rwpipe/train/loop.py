"""The training loop every reward model shares: length-grouped micro-batches, gradient
accumulation, AdamW with linear warmup and decay, gradient clipping, an eval pass each epoch,
and checkpoints that resume exactly.

A checkpoint holds the trainable weights, the optimizer and scheduler states, every RNG state
and the position in the data (epoch, micro-batch); the batches of an epoch depend only on the
seed and the epoch (`length_grouped_batches`), so a run killed and resumed replays the same
micro-batches in the same order and reproduces the uninterrupted run's losses.

Distributed: under `accelerate launch` (rwpipe/train/accelerate/ddp.yaml) or `torchrun`, the
model and optimizer go through `Accelerator.prepare` (DDP), the processes split each optimizer
step's micro-batches and sum their gradients, so N processes take exactly the steps of one
(`_step_losses`); rank 0 writes the checkpoints. FSDP and DeepSpeed are refused: a checkpoint
and the saved model are written from one process's full copy of the weights. A single process
is the default.
"""

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rwpipe.artifacts import atomic_path
from rwpipe.errors import RwpipeError
from rwpipe.runtime import pick_device, stable_seed
from rwpipe.train.backbone import Backbone, trainable_state
from rwpipe.train.data import length_grouped_batches

S = TypeVar("S")
# accelerate's distributed types that shard or wrap the model other than DDP: not built here
SHARDED = ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA")


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro: int = 0  # micro-batches done in this epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per optimizer step
    evals: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    tokens: int = 0  # real (non-padding) tokens trained on
    seconds: float = 0.0


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def rng_states() -> dict[str, Any]:
    """Every RNG a training step draws from (torch, Python, NumPy)."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state()}  # fmt: skip


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])


def matching_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint's state.json if it exists and was made with `fingerprint`; a checkpoint of
    another configuration is deleted (the run starts over)."""
    if not (path / "state.json").is_file():
        return None
    meta = json.loads((path / "state.json").read_text())
    if meta["fingerprint"] != fingerprint:
        shutil.rmtree(path)
        return None
    return meta


class Checkpointer:
    """Atomic checkpoints in `directory/ckpt`, for every trainer (reward models and RL).

    A checkpoint holds the trainable weights of each named model (`<name>.safetensors`), the
    state dicts of the named optimizers and schedulers plus every RNG state (`optim.pt`), and
    the run state, a dataclass, with the fingerprint of what produced it (`state.json`).
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.dir, self.fingerprint = directory, fingerprint
        self.path = directory / "ckpt"

    def save(self, models: Mapping[str, Any], optims: Mapping[str, Any], state: Any) -> None:
        """Write a checkpoint, replacing the previous one in one step."""
        with atomic_path(self.path) as tmp:
            tmp.mkdir()
            for name, model in models.items():
                weights = {n: p.detach().cpu().contiguous() for n, p in trainable_state(model)}
                save_file(weights, str(tmp / f"{name}.safetensors"))
            blob = {name: o.state_dict() for name, o in optims.items()} | {"rng": rng_states()}
            torch.save(blob, tmp / "optim.pt")
            meta = {"fingerprint": self.fingerprint, "state": asdict(state)}
            (tmp / "state.json").write_text(json.dumps(meta))

    def load(self, models: Mapping[str, Any], optims: Mapping[str, Any],
             state_type: type[S]) -> S | None:  # fmt: skip
        """Restore the checkpoint into `models` and `optims` (and the RNGs) if it exists and
        was made with the same fingerprint; returns its state, or None to start afresh."""
        meta = matching_checkpoint(self.path, self.fingerprint)
        if meta is None:
            return None
        for name, model in models.items():
            params = dict(trainable_state(model))
            with torch.no_grad():
                for n, value in load_file(str(self.path / f"{name}.safetensors")).items():
                    params[n].copy_(value)
        blob = torch.load(self.path / "optim.pt", weights_only=False)
        for name, o in optims.items():
            o.load_state_dict(blob[name])
        restore_rng_states(blob["rng"])
        return state_type(**meta["state"])


def _optimizers(params: Sequence[Any], optim: Any, num_items: int) -> tuple[Any, Any]:
    """AdamW and its schedule: linear warmup over `warmup_ratio` of the steps, then decay."""
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    per_epoch = math.ceil(num_items / optim.batch_size)
    total_steps = max(1, math.ceil(per_epoch / optim.grad_accum) * optim.epochs)
    warmup = int(optim.warmup_ratio * total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total_steps))


def _optimizer_step(accelerator: Any, params: Sequence[Any], optimizer: Any, scheduler: Any,
                    optim: Any) -> float:  # fmt: skip
    """Clip, step and zero the gradients; returns the norm before clipping."""
    norm = accelerator.clip_grad_norm_(params, optim.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def _end_epoch(model: Any, state: TrainState, evaluate: Callable[[], dict] | None) -> None:
    state.epoch, state.micro = state.epoch + 1, 0
    if evaluate:
        model.eval()
        state.evals.append({"epoch": state.epoch} | evaluate())
        model.train()


def _step_losses(accelerator: Any, model: Any, backbone: Backbone, units: list[list[Any]],
                 objective: str, seeds: list[int]) -> float:  # fmt: skip
    """Forward and backward of this process's share of one optimizer step's micro-batches
    (`units`, with one dropout seed each); returns the sum of their losses over all processes.

    The step's gradient is the mean over its k micro-batches of each one's gradient, the same
    for any number of processes: process r takes micro-batches r, r + N, ... and weights each
    loss N / k (DDP averages the processes' gradients, dividing by N). Every process runs the
    same number of rounds, ceil(k / N), and only the last one synchronises the gradients, so
    the all-reduces match: a process short of a micro-batch runs one at weight 0 (it adds zero
    gradient but still takes part): `grad_accum` a multiple of N wastes no round.
    """
    world, rank, k = accelerator.num_processes, accelerator.process_index, len(units)
    rounds = math.ceil(k / world)
    total = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for r in range(rounds):
        index = rank + r * world
        real = index < k
        sync = contextlib.nullcontext() if r == rounds - 1 else accelerator.no_sync(model)
        with sync:
            torch.manual_seed(seeds[index if real else 0])  # dropout: as in one process
            loss = backbone.loss(units[index if real else 0], objective)
            accelerator.backward(loss * (world / k if real else 0.0))
        if real:
            total += loss.detach().double()
    if world > 1:
        total = accelerator.reduce(total, reduction="sum")
    return float(total)


def process_device(requested: str) -> torch.device:
    """Where this process trains: under a launcher (`WORLD_SIZE` > 1), accelerate's device for
    this process (GPU `LOCAL_RANK`, or the CPU), so no process loads onto another's GPU; else
    `base.device`."""
    device = pick_device(requested)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu").device


def is_main_process() -> bool:
    """Whether this process writes the outputs (rank 0 under a launcher; always alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def fit(
    backbone: Backbone,
    items: Sequence[Any],
    lengths: Sequence[int],
    *,
    objective: str,
    optim: Any,
    seed: int,
    checkpointer: Checkpointer,
    evaluate: Callable[[], dict[str, Any]] | None = None,
    advance: Callable[[int, int], None] | None = None,
    stop_after_steps: int | None = None,
) -> TrainState:
    """Train `backbone` on `items` (examples or pairs) for `optim.epochs` epochs.

    Each optimizer step takes the next `optim.grad_accum` micro-batches of the epoch (the last
    step of an epoch may take fewer) and follows the mean of their gradients; N processes
    split those micro-batches and take the same steps as one (see `_step_losses`).

    Args:
        items, lengths: the training units and their token counts (for batching).
        objective: the loss (see `Backbone.loss`).
        optim: the `optim` params (lr, batch size, accumulation, ...).
        checkpointer: where checkpoints go; an existing matching one is resumed.
        evaluate: run after each epoch; its dict is stored in `state.evals`.
        advance: progress callback (items, tokens); called on the main process only.
        stop_after_steps: stop (after checkpointing) once this many optimizer steps are done;
            for tests of resume.

    Returns:
        The final state: per-step losses, per-epoch evals, tokens and seconds.

    Over 80 lines (a quarter of them this docstring) on purpose: resume, accumulation,
    checkpointing and evaluation must happen in one order, which reads best in one loop.
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=backbone.device.type == "cpu")
    kind = accelerator.distributed_type.name
    if kind in SHARDED:
        raise RwpipeError(
            f"accelerate {kind}: not supported by rwpipe's trainer (its checkpoints and saved "
            "model need every process to hold the whole model); launch with "
            "rwpipe/train/accelerate/ddp.yaml or torchrun (data parallel)"
        )
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizers(params, optim, len(items))
    torch.manual_seed(seed)
    random.seed(seed)
    optims = {"optimizer": optimizer, "scheduler": scheduler}
    state = checkpointer.load({"trainable": backbone.model}, optims, TrainState) or TrainState()
    model, optimizer = accelerator.prepare(backbone.model, optimizer)
    backbone.model, backbone.device, optims["optimizer"] = model, accelerator.device, optimizer
    if backbone.reference is not None:
        backbone.reference.to(accelerator.device)
    model.train()
    while state.epoch < optim.epochs and state.step != stop_after_steps:
        batches = length_grouped_batches(lengths, optim.batch_size, seed, state.epoch)
        for first in range(state.micro, len(batches), optim.grad_accum):
            start = time.perf_counter()
            group = range(first, min(first + optim.grad_accum, len(batches)))
            units = [[items[i] for i in batches[b]] for b in group]
            seeds = [stable_seed(seed, "micro", state.epoch, b) for b in group]
            loss = _step_losses(accelerator, model, backbone, units, objective, seeds)
            norm = _optimizer_step(accelerator, params, optimizer, scheduler, optim)
            tokens = [sum(lengths[i] for i in batches[b]) for b in group]
            state.step, state.micro = state.step + 1, group[-1] + 1
            state.tokens += sum(tokens)
            state.history.append(
                {
                    "step": state.step,
                    "epoch": state.epoch,
                    "loss": round(loss / len(group), 6),
                    "grad_norm": round(norm, 4),
                    "lr": scheduler.get_last_lr()[0],
                }
            )
            state.seconds += time.perf_counter() - start
            if advance and accelerator.is_main_process:
                for b, n in zip(group, tokens, strict=True):
                    advance(len(batches[b]), n)
            last = state.micro == len(batches)
            if last:
                _end_epoch(model, state, evaluate)
            if last or state.step % optim.checkpoint_every == 0 or state.step == stop_after_steps:
                if accelerator.is_main_process:  # every process holds the same weights
                    checkpointer.save({"trainable": accelerator.unwrap_model(model)}, optims, state)
                accelerator.wait_for_everyone()
            if state.step == stop_after_steps:
                break
    model.eval()
    backbone.model = accelerator.unwrap_model(model)
    return state
