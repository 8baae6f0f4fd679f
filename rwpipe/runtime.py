"""Devices, dtypes and seeds: the few decisions every stage makes the same way."""

import hashlib
import os
import random

import numpy as np


def stable_seed(*parts: object) -> int:
    """A 63-bit seed derived from `parts`, identical in every process and on every machine.

    Python's `hash()` of a string changes per process (PYTHONHASHSEED); blake2b does not.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def pick_device(device: str = "auto") -> "torch.device":  # noqa: F821
    """The torch device for `base.device`: auto picks cuda, then mps, then cpu."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    return torch.device(device)


def default_dtype(device: "torch.device") -> "torch.dtype":  # noqa: F821
    """float32 on CPU (bfloat16 is ~20x slower on AVX2 CPUs), bfloat16 on CUDA."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32
