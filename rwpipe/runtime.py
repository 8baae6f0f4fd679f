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


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of bf16 matmul units


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX), read from its flags.
    Without them torch emulates bfloat16 (~20x slower than float32 on AVX2)."""
    return bool(set(NATIVE_BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def default_dtype(device: "torch.device") -> "torch.dtype":  # noqa: F821
    """What `dtype: auto` means on `device`: bfloat16 on CUDA and on CPUs with native bfloat16
    (`cpu_has_native_bf16`), float32 elsewhere (AVX2-only CPUs, MPS)."""
    import torch

    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def resolve_dtype(name: str, device: "torch.device") -> "torch.dtype":  # noqa: F821
    """A `dtype` param as a torch dtype: `auto` is `default_dtype(device)`."""
    import torch

    return default_dtype(device) if name == "auto" else getattr(torch, name)


def auto_dtype_name(on_cpu: bool) -> str:
    """`default_dtype` as a name, for engines that take one (vLLM): CPU or CUDA."""
    return "bfloat16" if not on_cpu or cpu_has_native_bf16() else "float32"
