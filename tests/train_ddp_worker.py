"""One process of a multi-process reward-model training run on a tiny model, for
tests/test_train_ddp.py:

    python -m torch.distributed.run --nproc_per_node 2 tests/train_ddp_worker.py \
        TINY_DIR LABELS OUT_DIR CASE...

Each CASE trains through `rwpipe.train.run` (what `rwpipe train-prm` / `train-rm` call) into
OUT_DIR/CASE/model and OUT_DIR/CASE/report; `resume` stops after RESUME_STOP steps and
resumes in the same processes. Each process writes OUT_DIR/CASE/rank<r>.json: the world size,
the metrics (and history) it got back, and a digest of the trainable weights `fit` left.
The test imports `train_case` to make the single-process reference with the same code.
"""

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rwpipe.config import (  # noqa: E402
    BaseConfig,
    LoraConfig,
    OptimConfig,
    TrainPRMConfig,
    TrainRMConfig,
)

# 15 PRM examples and 10 Bradley-Terry pairs on tests.test_train._labels(): 5 micro-batches
# per epoch (an odd count) in every case.
CASES: dict[str, TrainPRMConfig | TrainRMConfig] = {
    # steps of 2, 2, 1 micro-batches; LoRA dropout on, so each micro-batch's dropout mask counts
    "prm": TrainPRMConfig(
        optim=OptimConfig(
            epochs=2, lr=1e-3, batch_size=3, grad_accum=2, checkpoint_every=2, max_length=64
        ),  # fmt: skip
        lora=LoraConfig(dropout=0.1),
    ),
    # steps of 3, 2: one process runs two micro-batches, the other one and a blank round;
    # the reference is the model with its LoRA adapter off
    "implicit": TrainPRMConfig(
        kind="implicit",
        optim=OptimConfig(epochs=2, lr=1e-3, batch_size=3, grad_accum=3, max_length=64),
    ),
    # one micro-batch per step: every step one process has none; full fine-tuning
    "orm-bt-full": TrainRMConfig(
        loss="bt",
        lora=LoraConfig(enabled=False),
        optim=OptimConfig(epochs=2, lr=1e-4, batch_size=2, grad_accum=1, max_length=64),
    ),
}
CASES["resume"] = CASES["prm"]
RESUME_STOP = 4  # the first step of epoch 2, after a checkpoint


def train_case(case: str, tiny: Path, labels: Path, out: Path) -> dict[str, Any]:
    """Train CASE as the stage does; returns what this process saw."""
    import torch

    from rwpipe import artifacts, train

    trained: dict[str, Any] = {}
    fit = train.fit

    def spy(backbone, *args, **kwargs):  # digest the weights fit leaves (rank 0 then merges)
        state = fit(backbone, *args, **kwargs)
        digest = hashlib.sha256()
        for _, p in sorted(backbone.model.named_parameters()):
            if p.requires_grad:
                digest.update(p.detach().to(torch.float32).numpy().tobytes())
        trained["digest"] = digest.hexdigest()
        return state

    train.fit = spy
    try:
        cfg, base = CASES[case], BaseConfig(seed=0, device="cpu")
        if case == "resume":
            table = artifacts.read_artifact(labels, "labels")
            for stop in (RESUME_STOP, None):
                state, metrics = train.train_reward_model(
                    table, tiny, out / "model", cfg, seed=0, device="cpu", where=str(labels),
                    fingerprint="resume", stop_after_steps=stop,
                )  # fmt: skip
                if stop is not None:
                    assert state.step == stop, state.step
            history = state.history
        else:
            metrics = train.run(cfg, base, labels=labels, base_model=tiny, out=out / "model",
                                report_dir=out / "report")  # fmt: skip
            history = None
    finally:
        train.fit = fit
    return {"world": int(os.environ.get("WORLD_SIZE", "1")), "metrics": metrics,
            "history": history, "digest": trained["digest"]}  # fmt: skip


def main() -> None:
    tiny, labels, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rank = int(os.environ.get("RANK", "0"))
    for case in sys.argv[4:]:
        result = train_case(case, tiny, labels, out / case)
        (out / case / f"rank{rank}.json").write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
