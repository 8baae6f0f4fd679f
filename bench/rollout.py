"""Rollout throughput: vLLM vs transformers on the same prompts, and this machine's compute limit.

    python bench/rollout.py [--model DIR] [--sizes 8 32 64] [--variants]

Each (backend, size) runs in its own subprocess (so peak RSS is that run's alone): it loads
the engine, warms it up, then times one `generate` of `size` chat-templated arithmetic
questions with n=1, temperature 0.7 and exactly `--max-new-tokens` tokens per sequence
(min_new_tokens = max_new_tokens, so both engines make the same number of tokens). tokens/s
is generated tokens over the wall time of that call (prefill included; prompts are ~45 tokens).

Both engines run at `dtype: auto`, what users get: bfloat16 where the CPU computes it natively
(AVX-512 BF16 or AMX, read from its flags), float32 elsewhere (`rwpipe.runtime`). The compute
limit is matmul FLOP/s in that dtype, measured with torch on this process's threads at the
model's own shapes (the best of 64 and 1024 rows), divided by the FLOPs per generated token
(2 x every matmul parameter, lm_head included, plus the attention score and value products at
the mean context length); the fp32 limit is recorded beside it. `--variants` adds runs at the
largest size with one setting changed (vLLM: torch.compile cold and warm, the multiprocess
engine, one thread, float32 or bfloat16; transformers: float32 or bfloat16) to show what holds
vLLM back. Every `*_pct_of_limit_*` key is against the limit at the auto dtype. Each child
records its engine start time (load to ready, compilation included). Results go to
bench/results/rollout.json (`--out`: rollout_avx512.json on a CPU with native bfloat16, so the
AVX2 machine's figures stay) as flat keys with units, with the machine facts (bench/machine.py).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import machine

RESULTS = Path(__file__).parent / "results" / "rollout.json"
# torch.compile's caches (vLLM's compiled graphs, inductor's kernels): the cold variant starts
# from an empty directory, the warm one reuses what the cold one wrote.
COMPILE_CACHE_ENV = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR")
MARK = "RWBENCH "  # prefix of the child's result line
# name -> (backend, load_generator engine kwargs, environment additions): runs at the top size
# with one setting changed from the defaults.
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "compiled": ("vllm", {"enforce_eager": False}, {}),  # cold: an empty compile cache
    "compiled_warm": ("vllm", {"enforce_eager": False}, {}),  # the cache "compiled" filled
    "mp_engine": ("vllm", {}, {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}),
    "mp_engine_bind_all": (
        "vllm",
        {},
        {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1"},
    ),
    "threads1": ("vllm", {"threads": 1}, {}),
    "bf16": ("vllm", {"dtype": "bfloat16"}, {}),
    "fp32": ("vllm", {"dtype": "float32"}, {}),
    "hf_fp32": ("hf", {"dtype": "float32"}, {}),
    "compiled_bf16": ("vllm", {"dtype": "bfloat16", "enforce_eager": False}, {}),
    "hf_bf16": ("hf", {"dtype": "bfloat16"}, {}),
}


def questions(count: int) -> list[str]:
    """Deterministic synthetic arithmetic questions."""
    return [f"What is {(37 * i) % 90 + 10} + {(53 * i) % 90 + 10}?" for i in range(count)]


def run_child(args: argparse.Namespace) -> None:
    """Subprocess body: one engine, one timed generate; prints a JSON line."""
    from rwpipe.backends import SamplingParams, load_generator

    kwargs = json.loads(args.engine_kwargs)
    start = time.perf_counter()
    generator = load_generator(args.model, args.backend, device="cpu", **kwargs)
    started = time.perf_counter() - start
    prompts = [generator.chat_prompt(q) for q in questions(args.size)]
    tokens = args.max_new_tokens
    params = SamplingParams(temperature=0.7, max_new_tokens=tokens, min_new_tokens=tokens, seed=1)
    warm = SamplingParams(temperature=0.7, max_new_tokens=8, min_new_tokens=8, seed=2)
    generator.generate(prompts[:4], warm)  # first-call costs (allocator, oneDNN) are not rollout
    start = time.perf_counter()
    outputs = generator.generate(prompts, params)
    seconds = time.perf_counter() - start
    generated = sum(len(c.token_ids) for cs in outputs for c in cs)
    # Tagged: vLLM's multiprocess engine logs to stdout too.
    result = {"tokens": generated, "seconds": seconds, "start_s": started, "dtype": generator.dtype}
    print(MARK + json.dumps(result), flush=True)
    generator.close()


def measure(
    model: str,
    backend: str,
    size: int,
    max_new_tokens: int,
    variant: str = "",
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Run one child; returns its tokens, seconds, engine start seconds, dtype and peak RSS
    (MiB, from wait4). `env` adds to the variant's environment.

    Raises:
        subprocess.TimeoutExpired: the child ran past `timeout` seconds (it is killed).
    """
    kwargs, extra = VARIANTS[variant][1:] if variant else ({}, {})
    env = extra | (env or {})
    cmd = [
        sys.executable, __file__, "--child", "--model", model, "--backend", backend,
        "--size", str(size), "--max-new-tokens", str(max_new_tokens),
        "--engine-kwargs", json.dumps(kwargs),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, env=os.environ | env, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    # A timer kills a child (and its engine processes) that runs too long; reading to EOF and
    # then wait4, not communicate, keeps this child's own peak RSS in the rusage.
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        os.killpg(proc.pid, signal.SIGKILL)

    killer = threading.Timer(timeout, kill) if timeout else None
    if killer:
        killer.start()
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    if killer:
        killer.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout or 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} size {size} {variant}: exit {proc.returncode}")
    result = json.loads(next(x for x in lines if x.startswith(MARK))[len(MARK) :])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def _dims(config: dict) -> tuple[int, int, int, int]:
    """hidden size, MLP size, layer count and key/value width of a Llama-style config."""
    h = config["hidden_size"]
    kv = config["num_key_value_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    return h, config["intermediate_size"], config["num_hidden_layers"], kv


def flops_per_token(config: dict, context: float) -> float:
    """Forward FLOPs for one generated token of a Llama-style decoder.

    2 x (attention projections + MLP) per layer, 2 x lm_head, plus 4 x hidden x context per
    layer for the attention scores (Q K^T) and the weighted values (A V).
    """
    h, inter, layers, kv = _dims(config)
    per_layer = 2 * (h * h * 2 + h * kv * 2 + 3 * h * inter) + 4 * h * context
    return layers * per_layer + 2 * h * config["vocab_size"]


def _seconds_per_linear(
    rows: int, out_features: int, in_features: int, budget: float, dtype: str = "float32"
) -> float:
    """Fastest of 5 rounds of the mean time of one `F.linear` in `dtype`, (rows, in) by
    (out, in)^T.

    The fastest round is the machine's capability; slower rounds are other tenants' load.
    """
    import torch

    dt = getattr(torch, dtype)
    x = torch.randn(rows, in_features, dtype=dt)
    w = torch.randn(out_features, in_features, dtype=dt)
    torch.nn.functional.linear(x, w)  # first call: allocation, kernel selection
    rounds = []
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < budget / 5:
            torch.nn.functional.linear(x, w)
            calls += 1
        rounds.append((time.perf_counter() - start) / calls)
    return min(rounds)


def matmul_flops(config: dict, rows: int, budget: float = 1.0, dtype: str = "float32") -> float:
    """FLOP/s in `dtype` of one forward's linear layers with `rows` rows (a decode step's batch).

    Each distinct shape is timed on its own, then weighted by how often the model runs it
    (every layer's projections and MLP, once the lm_head), so the result is the matmul rate
    a perfect engine would get on this model at this batch size.
    """
    h, inter, layers, kv = _dims(config)
    per_layer = [(h, h), (kv, h), (kv, h), (h, h), (inter, h), (inter, h), (h, inter)]
    shapes = [(shape, layers) for shape in per_layer] + [((config["vocab_size"], h), 1)]
    seconds = sum(
        count * _seconds_per_linear(rows, *shape, budget, dtype) for shape, count in shapes
    )
    flop = sum(count * 2 * rows * o * i for (o, i), count in shapes)
    return flop / seconds


def measure_engines(args: argparse.Namespace) -> dict[str, float]:
    """tokens/s and peak RSS of both engines at every size, then the variants."""
    out: dict[str, float] = {}
    for size in args.sizes:
        for backend in ("vllm", "hf"):
            r = measure(args.model, backend, size, args.max_new_tokens)
            out[f"{backend}_tokens_per_s_{size}"] = round(r["tokens"] / r["seconds"], 1)
            out[f"peak_rss_mib_{backend}_{size}"] = round(r["peak_rss_mib"])
            out[f"{backend}_engine_start_s_{size}"] = round(r["start_s"], 1)
            out[f"{backend}_dtype"] = r["dtype"]
            print(backend, size, r, file=sys.stderr, flush=True)
        ratio = out[f"vllm_tokens_per_s_{size}"] / out[f"hf_tokens_per_s_{size}"]
        out[f"ratio_vllm_over_hf_{size}"] = round(ratio, 2)
    chosen = [] if args.variants is None else args.variants or list(VARIANTS)
    if "compiled_warm" in chosen and "compiled" in chosen:  # warm reads what cold wrote
        chosen.remove("compiled_warm")
        chosen.insert(chosen.index("compiled") + 1, "compiled_warm")
    with tempfile.TemporaryDirectory(prefix="rwbench-compile-") as cache:
        env = {name: os.path.join(cache, name.lower()) for name in COMPILE_CACHE_ENV}
        for variant in chosen:
            backend, top = VARIANTS[variant][0], max(args.sizes)
            name = variant.removeprefix(f"{backend}_")
            key = f"{backend}_tokens_per_s_{top}_{name}"
            try:
                r = measure(
                    args.model, backend, top, args.max_new_tokens, variant, args.timeout, env
                )
            except subprocess.TimeoutExpired:
                out[f"{key}_timed_out_after_s"] = args.timeout  # a slow setting is a result too
                print(variant, "timed out", file=sys.stderr, flush=True)
                continue
            out[key] = round(r["tokens"] / r["seconds"], 1)
            out[f"{backend}_engine_start_s_{top}_{name}"] = round(r["start_s"], 1)
            print(variant, r, file=sys.stderr, flush=True)
    return out


def run_all(args: argparse.Namespace) -> dict:
    """Every measurement, flat keys with units.

    The matmul rate on this VM moves by +-25% between runs even when idle (other tenants of
    the host), so it is measured before and after the engines and the limit uses the faster.
    The limit is the best rate at 64 or 1024 rows: vLLM's prepacked oneDNN kernels beat
    torch's `F.linear` at 64 rows, so the 64-row rate alone is not an upper bound.
    """
    from rwpipe.runtime import auto_dtype_name

    config = json.loads((Path(args.model) / "config.json").read_text())
    context = 45 + args.max_new_tokens / 2  # mean attended length: prompt + half the output
    per_token = flops_per_token(config, context)
    dtype = auto_dtype_name(on_cpu=True)  # what both engines' `dtype: auto` computes in
    out: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "auto_dtype": dtype}
    rates = {"float32", dtype}
    shapes = [(dt, rows) for dt in sorted(rates) for rows in (64, 1024)]
    before = {(dt, rows): matmul_flops(config, rows, dtype=dt) for dt, rows in shapes}
    out |= measure_engines(args)
    after = {(dt, rows): matmul_flops(config, rows, dtype=dt) for dt, rows in shapes}
    best = {k: max(before[k], after[k]) for k in before}
    limit = max(best[dtype, 64], best[dtype, 1024]) / per_token
    short = {"float32": "fp32", "bfloat16": "bf16"}
    for dt in sorted(rates):
        tag = short[dt]
        out |= {
            f"matmul_gflops_{tag}_m64": round(best[dt, 64] / 1e9, 1),
            f"matmul_gflops_{tag}_m1024": round(best[dt, 1024] / 1e9, 1),
            f"matmul_gflops_{tag}_m64_before": round(before[dt, 64] / 1e9, 1),
            f"matmul_gflops_{tag}_m64_after": round(after[dt, 64] / 1e9, 1),
        }
    fp32_limit = max(best["float32", 64], best["float32", 1024]) / per_token
    out |= {
        "flops_per_token_mflop": round(per_token / 1e6, 1),
        "compute_limit_tokens_per_s": round(limit, 1),
        "compute_limit_m64_tokens_per_s": round(best[dtype, 64] / per_token, 1),
        "compute_limit_fp32_tokens_per_s": round(fp32_limit, 1),
    }
    engines = ("vllm_tokens_per_s_", "hf_tokens_per_s_")
    for key in [k for k in out if k.startswith(engines) and not k.endswith("_after_s")]:
        out[key.replace("tokens_per_s", "pct_of_limit")] = round(100 * out[key] / limit, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=os.environ.get("RWPIPE_TEST_MODEL", "data/models/smollm2-135m-instruct")
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=list(VARIANTS),
        help="variant runs at the top size; no names: all of them",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine-kwargs", default="{}", help=argparse.SUPPRESS)
    machine.add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    started = machine.start(args.other_work)
    results = machine.write_results(args.out, run_all(args), started)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
