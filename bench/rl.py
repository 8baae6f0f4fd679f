"""RL demonstration on the embedded default: does a short GRPO run raise eval pass@1?

    python bench/rl.py [--model DIR] [--kinds add,mul] [--n-train 64] [--n-eval 64]
                       [--steps 12] [--variant NAME=key=value,key=value ...] [--out DIR]

Runs the user's commands (`rwpipe prepare`, `rollout`, `rl`, `rollout --splits eval`) on a
params file made from the shipped params.yaml with the overrides below, then compares the base
and each RL policy on the eval split with `rwpipe.eval.curves.compare_policies` (pass@1 over
`rollout.sampling.n` samples per problem, paired difference with a 95% interval).

Default variant `grpo`: verifiable reward only. Add variants as
`--variant prm_sum=rewards.prm=1.0,credit=sum --prm data/models/prm` (keys under `rl`).
Results: --results (bench/results/rl.json; the PRM-credit comparison goes to
bench/results/rl_prm.json), one file per invocation so that every variant in it shares one
machine and one run: flat keys per variant, each with its pass@1 difference, 95% interval and
verdict on "RL raises eval pass@1", and the machine facts (bench/machine.py). The curves go
under --out.

Variants that differ only in `seed=` (RL's own seed: `--variant seed1=seed=1 ...`) are runs of
one recipe; their paired intervals cover the eval samples, not the training run. With two or
more of them the results also hold the recipe's effect across runs: the mean of their
differences with a t interval over the seeds (`seeds_*`). `--summarise` adds those keys to an
existing results file without running anything.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

import machine
import yaml
from validity import run_cli  # one rwpipe command, as a user runs it

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "rl.json"
CLAIM = "RL raises eval pass@1 over the base policy"
# Student's t, 97.5% quantile by degrees of freedom (a two-sided 95% interval)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}  # fmt: skip


def seed_summary(results: dict) -> dict:
    """The recipe's effect across the seed-only variants: mean difference, t interval over
    the runs, how many runs showed it on their own; {} with fewer than two such variants."""
    names = [k[: -len("_spec")] for k, v in results.items()
             if k.endswith("_spec") and str(v).startswith("seed=")]  # fmt: skip
    if len(names) < 2:
        return {}
    deltas = [results[f"{n}_delta"] for n in sorted(names)]
    k, mean, sd = len(deltas), statistics.mean(deltas), statistics.stdev(deltas)
    half = T975[k - 1] * sd / math.sqrt(k)
    lo, hi = mean - half, mean + half
    return {
        "seeds": k,
        "seeds_names": ",".join(sorted(names)),
        "seeds_claim": f"{CLAIM}, across RL runs (seeds)",
        "seeds_delta_mean": round(mean, 4),
        "seeds_delta_sd": round(sd, 4),
        "seeds_delta_ci95_lo": round(lo, 4),
        "seeds_delta_ci95_hi": round(hi, 4),
        "seeds_ci_method": f"t interval over the {k} runs' differences (df = {k - 1})",
        "seeds_verdict": machine.verdict(lo, hi),
        "seeds_shown_alone": sum(results[f"{n}_verdict"] == "shown" for n in names),
    }


def _set(section: dict, dotted: str, value: str) -> None:
    *path, last = dotted.split(".")
    for p in path:
        section = section[p]
    section[last] = yaml.safe_load(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="data/models/smollm2-135m-instruct")
    ap.add_argument("--kinds", default="add,mul")
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4, help="eval samples per problem")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--variant", action="append", default=[], help="NAME=key=value,...")
    ap.add_argument("--prm", default=None)
    ap.add_argument("--orm", default=None)
    ap.add_argument("--out", default="/tmp/rwpipe-bench-rl")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (overwritten)")
    ap.add_argument("--summarise", action="store_true", help="only add the seeds_* keys")
    machine.add_arguments(ap)
    args = ap.parse_args()
    if args.summarise:
        machine.update_results(
            args.results, seed_summary(json.loads(args.results.read_text())), "seeds"
        )
        return
    started = machine.start(args.other_work)

    from rwpipe import artifacts
    from rwpipe.eval.curves import compare_policies

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"] |= {"n_train": args.n_train, "n_eval": args.n_eval,
                          "synthetic": {"kinds": args.kinds.split(",")}}  # fmt: skip
    params["rollout"]["sampling"] |= {"n": args.samples, "max_new_tokens": args.max_new_tokens}
    rl = params["rl"]
    rl |= {"steps": args.steps, "prompts_per_step": args.prompts_per_step,
           "group_size": args.group_size}  # fmt: skip
    rl["sampling"]["max_new_tokens"] = args.max_new_tokens
    rl["optim"]["lr"] = args.lr
    base_params = out / "params.yaml"
    base_params.write_text(yaml.safe_dump(params, sort_keys=False))

    problems, base_rollouts = out / "problems.arrow", out / "rollouts_base.arrow"
    if not problems.exists():
        run_cli("prepare", problems, "-p", base_params)
    seconds = {}
    if not base_rollouts.exists():
        seconds["base_rollout_s"] = run_cli(
            "rollout", problems, args.model, base_rollouts, "--splits", "eval", "-p", base_params
        )
    base_rows = artifacts.read_artifact(base_rollouts, "rollouts").to_pylist()

    variants = {"grpo": ""} if not args.variant else {}
    for v in args.variant:
        name, _, spec = v.partition("=")
        variants[name] = spec
    results: dict = {
        "model": Path(args.model).name, "kinds": args.kinds, "n_train": args.n_train,
        "n_eval": args.n_eval, "eval_samples_per_problem": args.samples, "rl_steps": args.steps,
        "prompts_per_step": args.prompts_per_step, "group_size": args.group_size,
        "max_new_tokens": args.max_new_tokens, "lr": args.lr, "prm_model": args.prm,
        "orm_model": args.orm,
    } | seconds  # fmt: skip
    for name, spec in variants.items():
        p = yaml.safe_load(base_params.read_text())
        for kv in filter(None, spec.split(",")):
            key, _, value = kv.partition("=")
            _set(p["rl"], key, value)
        p["rl"]["name"] = f"policy-{name}"
        vparams = out / f"params-{name}.yaml"
        vparams.write_text(yaml.safe_dump(p, sort_keys=False))
        policy, report = out / f"policy-{name}", out / f"rl-{name}"
        extra = [x for flag, path in (("--prm", args.prm), ("--orm", args.orm)) if path
                 for x in (flag, path)]  # fmt: skip
        rl_s = run_cli("rl", problems, args.model, policy, "--report-dir", report, *extra,
                    "-p", vparams)  # fmt: skip
        rl_rollouts = out / f"rollouts-{name}.arrow"
        run_cli("rollout", problems, policy, rl_rollouts, "--splits", "eval", "-p", vparams)
        cmp = compare_policies(
            base_rows, artifacts.read_artifact(rl_rollouts, "rollouts").to_pylist()
        )
        curve = json.loads((report / "metrics.json").read_text())
        results |= {f"{name}_{k.replace('@', '_at_')}": round(v, 4) if isinstance(v, float) else v
                    for k, v in cmp.items()}  # fmt: skip
        results |= {f"{name}_train_{k}": v for k, v in curve.items()}
        results[f"{name}_rl_seconds"] = round(rl_s, 1)
        results[f"{name}_rl_steps"] = args.steps
        results[f"{name}_spec"] = spec or "rewards.verifiable=1"
        results[f"{name}_credit"] = p["rl"].get("credit")  # the settings the spec left alone too
        results[f"{name}_clip_eta"] = p["rl"].get("clip_eta")
        results |= {f"{name}_reward_{k}": v for k, v in p["rl"].get("rewards", {}).items()}
        results[f"{name}_claim"] = CLAIM
        lo, hi = results[f"{name}_delta_ci95_lo"], results[f"{name}_delta_ci95_hi"]
        results[f"{name}_verdict"] = machine.verdict(lo, hi)
        # Written after each variant: a crash keeps the variants done.
        results |= seed_summary(results)
        machine.write_results(args.results, results, started)
        print(json.dumps({k: v for k, v in results.items() if k.startswith(name)}, indent=1))


if __name__ == "__main__":
    main()
