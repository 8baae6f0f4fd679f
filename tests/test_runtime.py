"""What `dtype: auto` means, read from the CPU's flags (never assumed)."""

import torch

from rwpipe import runtime


def test_native_bf16_is_read_from_the_cpu_flags():
    assert runtime.cpu_has_native_bf16(frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert runtime.cpu_has_native_bf16(frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert not runtime.cpu_has_native_bf16(frozenset({"avx2", "avx512f", "fma"}))
    assert not runtime.cpu_has_native_bf16(frozenset())


def test_auto_dtype_follows_this_machine(monkeypatch):
    native = runtime.cpu_has_native_bf16()
    want = torch.bfloat16 if native else torch.float32
    assert runtime.default_dtype(torch.device("cpu")) == want
    assert runtime.auto_dtype_name(on_cpu=True) == str(want).removeprefix("torch.")
    assert runtime.default_dtype(torch.device("cuda")) == torch.bfloat16
    assert runtime.auto_dtype_name(on_cpu=False) == "bfloat16"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    assert runtime.default_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert runtime.default_dtype(torch.device("cpu")) == torch.bfloat16
    assert runtime.auto_dtype_name(on_cpu=True) == "bfloat16"


def test_the_flags_are_this_machines():
    flags = runtime.cpu_flags()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert flags == frozenset()
        return
    line = next(x for x in text.splitlines() if x.startswith("flags"))
    assert flags == frozenset(line.partition(":")[2].split()) and "fpu" in flags
