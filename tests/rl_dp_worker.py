"""One process of a data-parallel RL run on a tiny model, for tests/test_rl.py:

    python -m torch.distributed.run --nproc_per_node 2 tests/rl_dp_worker.py TINY_DIR OUT_DIR

Each process writes OUT_DIR/rank<r>.json: a digest of its trainable weights, its LoRA B norm
and the run's history, so the test can check that the replicas stayed identical.
"""

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rwpipe.rl.parallel import DataParallel  # noqa: E402
from tests.test_rl import _cfg, _curve, _run  # noqa: E402


def main() -> None:
    tiny, out = Path(sys.argv[1]), Path(sys.argv[2])
    dp = DataParallel.from_env()
    cfg = _cfg(steps=2, prompts_per_step=2)
    policy, state = _run(out / "ckpt", tiny, cfg, dp=dp)
    digest = hashlib.sha256()
    lora_b = 0.0
    for name, p in sorted(policy.model.named_parameters()):
        if p.requires_grad:
            digest.update(p.detach().numpy().tobytes())
            lora_b += float(p.detach().norm()) if "lora_B" in name else 0.0
    result = {"world": dp.world, "digest": digest.hexdigest(), "lora_b_norm": lora_b,
              "history": _curve(state)}  # fmt: skip
    (out / f"rank{dp.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
