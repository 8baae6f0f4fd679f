"""Where a vLLM decode step's time goes, and how far the matmul kernels alone could take it.

    python bench/rollout_profile.py [--model DIR] [--sizes 64 256] [--out FILE]

bench/rollout.py measures vLLM's tokens/s against this machine's matmul limit; this bench
explains the gap. For each size a child process loads the vLLM engine as rwpipe does (`dtype:
auto`, in-process, eager), warms it up, times one `generate` of `size` questions with exactly
`--max-new-tokens` tokens each (the same prompts and sampling as bench/rollout.py), then runs
the same call again under cProfile and sums the seconds spent inside the compiled kernels by
what they do:

- matmul: vLLM's oneDNN GEMMs (every projection, the MLP and the lm_head);
- attention: the paged attention kernel and the KV-cache writes;
- sampling: the Gumbel-max sampler over the vocabulary, the log-softmax for the sampled token's
  logprob, any argmax/top-k/sort;
- other tensor ops: norms, activations, rotary embedding, casts, copies;
- engine and Python: the rest of the call (scheduler, input preparation, output processing,
  detokenisation, rwpipe's loop) and cProfile's own overhead, which lands here (the plain
  call's step time is recorded beside the profiled one, so the overhead can be read off).

A kernel's seconds are its wall time as cProfile sees the call, so the matmul seconds are
what the GEMMs cost in the engine; `matmul_only_tokens_per_s` is the tokens of the call over
those seconds: the rate if every other second of the step were removed. Against the compute
limit (the same definition and measurement as bench/rollout.py, in the same run) it bounds
what any engine that runs these GEMMs could reach at this batch. Results go to
bench/results/rollout_profile.json with the machine facts (bench/machine.py).
"""

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import machine
import rollout

RESULTS = Path(__file__).parent / "results" / "rollout_profile.json"
MARK = "RWBENCH "
# category -> substrings of a cProfile built-in's name; first match wins, in this order
KERNELS = {
    "matmul": ("onednn_mm", "_nn.linear", "addmm", "built-in method mm", "bmm", "matmul"),
    "attention": ("attention", "attn"),
    "sampling": ("gumbel", "softmax", "argmax", "topk", "sort", "exponential", "multinomial"),
    "other_ops": ("",),  # every other torch built-in
}
CATEGORIES = (*KERNELS, "engine_python")


def categorise(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """(seconds, calls) per kernel category among the profiled built-ins."""
    out = {name: (0.0, 0) for name in KERNELS}
    for (file, _, func), (_, calls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if file != "~" or not ("torch" in func or "TensorBase" in func):
            continue  # Python functions and non-torch built-ins: the engine's own time
        for name, keys in KERNELS.items():
            if any(key in func for key in keys):
                seconds, count = out[name]
                out[name] = (seconds + own, count + calls)
                break
    return out


def run_child(args: argparse.Namespace) -> None:
    """One engine: a plain timed call, then the same call profiled; prints a JSON line."""
    from rwpipe.backends import SamplingParams, load_generator

    generator = load_generator(args.model, "vllm", device="cpu", **json.loads(args.engine_kwargs))
    prompts = [generator.chat_prompt(q) for q in rollout.questions(args.size)]
    encode = generator.tokenizer.encode
    prompt_tokens = sum(len(encode(p, add_special_tokens=False)) for p in prompts)
    n = args.max_new_tokens
    params = SamplingParams(temperature=0.7, max_new_tokens=n, min_new_tokens=n, seed=1)
    warm = SamplingParams(temperature=0.7, max_new_tokens=8, min_new_tokens=8, seed=2)
    generator.generate(prompts[:4], warm)
    start = time.perf_counter()
    outputs = generator.generate(prompts, params)
    plain = time.perf_counter() - start
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    generator.generate(prompts, params)
    profile.disable()
    profiled = time.perf_counter() - start
    kernels = categorise(pstats.Stats(profile))
    result = {
        "tokens": sum(len(c.token_ids) for cs in outputs for c in cs),
        "prompt_tokens": prompt_tokens,
        "plain_s": plain,
        "profiled_s": profiled,
        "dtype": generator.dtype,
        "kernels": kernels,
    }
    print(MARK + json.dumps(result), flush=True)
    generator.close()


def measure(args: argparse.Namespace, size: int) -> dict:
    cmd = [
        sys.executable, __file__, "--child", "--model", args.model, "--size", str(size),
        "--max-new-tokens", str(args.max_new_tokens), "--engine-kwargs", args.engine_kwargs,
    ]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARK))
    return json.loads(line[len(MARK) :])


def run_all(args: argparse.Namespace) -> dict:
    from rwpipe.runtime import auto_dtype_name

    config = json.loads((Path(args.model) / "config.json").read_text())
    per_token = rollout.flops_per_token(config, 45 + args.max_new_tokens / 2)
    dtype = auto_dtype_name(on_cpu=True)
    h, inter, layers, kv = rollout._dims(config)
    layer_params = layers * (h * h * 2 + h * kv * 2 + 3 * h * inter)
    lm_head = h * config["vocab_size"]
    out: dict = {"max_new_tokens": args.max_new_tokens, "auto_dtype": dtype}
    before = {rows: rollout.matmul_flops(config, rows, dtype=dtype) for rows in (64, 1024)}
    for size in args.sizes:
        r = measure(args, size)
        print(size, r, file=sys.stderr, flush=True)
        tokens, wall = r["tokens"], r["profiled_s"]
        kernels = {name: secs for name, (secs, _) in r["kernels"].items()}
        kernels["engine_python"] = wall - sum(kernels.values())
        # GEMM work of the call: every prompt and generated token through the layers; the
        # lm_head only where a token is sampled (each generated token; the last prompt
        # position is the first of them)
        gemm = 2 * (layer_params * (r["prompt_tokens"] + tokens) + lm_head * tokens)
        out |= {
            f"vllm_dtype_{size}": r["dtype"],
            f"tokens_per_s_{size}": round(tokens / r["plain_s"], 1),
            f"profiled_tokens_per_s_{size}": round(tokens / wall, 1),
            f"prompt_tokens_{size}": r["prompt_tokens"],
            f"generated_tokens_{size}": tokens,
            f"step_ms_{size}": round(1e3 * wall / args.max_new_tokens, 2),
            f"step_ms_unprofiled_{size}": round(1e3 * r["plain_s"] / args.max_new_tokens, 2),
            f"matmul_calls_{size}": r["kernels"]["matmul"][1],
            f"engine_matmul_gflops_{size}": round(gemm / kernels["matmul"] / 1e9, 1),
            f"matmul_only_tokens_per_s_{size}": round(tokens / kernels["matmul"], 1),
        }
        for name in CATEGORIES:
            out[f"share_pct_{name}_{size}"] = round(100 * kernels[name] / wall, 1)
            out[f"step_ms_{name}_{size}"] = round(1e3 * kernels[name] / args.max_new_tokens, 2)
    after = {rows: rollout.matmul_flops(config, rows, dtype=dtype) for rows in (64, 1024)}
    best = {rows: max(before[rows], after[rows]) for rows in before}
    limit = max(best.values()) / per_token
    out |= {
        "flops_per_token_mflop": round(per_token / 1e6, 1),
        "compute_limit_tokens_per_s": round(limit, 1),
        "matmul_gflops_m64": round(best[64] / 1e9, 1),
        "matmul_gflops_m1024": round(best[1024] / 1e9, 1),
    }
    for size in args.sizes:
        for key in ("tokens_per_s", "matmul_only_tokens_per_s"):
            pct = 100 * out[f"{key}_{size}"] / limit
            out[f"{key.replace('tokens_per_s', 'pct_of_limit')}_{size}"] = round(pct, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=os.environ.get("RWPIPE_TEST_MODEL", "data/models/smollm2-135m-instruct")
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--engine-kwargs", default="{}", help="JSON: vllm.LLM arguments over rwpipe's defaults"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
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
