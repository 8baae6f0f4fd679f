"""The renderers of bench/report.py: one function per generated region of BENCHMARKS.md and
README.md, each a function of the results files (bench name -> flat dict), and REGIONS, the
map from region name to renderer.

A renderer prints only what the results hold: a bench without a results file renders as "not
run", a key a file lacks as "not recorded", and a file written before bench/machine.py existed
as "recorded before machine facts were kept". Targets (the issue's thresholds) are the only
constants here.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

OLD_FACTS = "recorded before machine facts were kept"
Results = dict[str, dict[str, Any]]


# Formatting: one place for digits, signs and intervals.
def f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def sf(x: float, digits: int = 3) -> str:
    """Signed, with a true minus sign."""
    return f"{x:+.{digits}f}".replace("-", "−")


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def ci(lo: float, hi: float, digits: int = 3, signed: bool = False) -> str:
    fmt = sf if signed else f
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):d} s"


def got(r: dict, key: str, fmt: Callable[[Any], str] = str) -> str:
    """A recorded value, formatted, or "not recorded"."""
    return fmt(r[key]) if r.get(key) is not None else "not recorded"


def absent(name: str) -> str:
    return f"*Not run: `bench/results/{name}.json` is absent.*"


def table(header: list[str], rows: list[list[str]], right: int = 1) -> str:
    """A Markdown table; columns from `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


_FACTS = (
    "cpu_model", "cpu_count", "cpu_usable_count", "memory_gib", "cpu_capability", "cpu_avx512f",
    "cpu_avx512_bf16", "cpu_amx_bf16", "gpu", "torch_threads", "version_python", "version_torch",
    "version_transformers", "version_vllm", "version_trl", "git_commit", "date_utc",
    "bench_seconds", "load_avg_1min_start", "load_avg_1min_end", "other_work",
)  # fmt: skip


def machine_line(r: dict) -> str:
    """The run's machine, from the facts bench/machine.py writes, or what an older file keeps."""
    if r.get("machine_facts_version"):
        g = {k: "not recorded" if v is None else v for k, v in r.items()}
        g = {**{k: "not recorded" for k in _FACTS}, **g}  # a failed library probe, say
        yes = {True: "yes", False: "no", "not recorded": "not recorded"}
        dirty = " with uncommitted changes" if r.get("git_dirty") else ""
        probe = f" (library probe failed: {r['probe_error']})" if "probe_error" in r else ""
        return (
            f"**Run:** {g['cpu_model']}, {g['cpu_count']} cores ({g['cpu_usable_count']} usable),"
            f" {g['memory_gib']} GiB, torch CPU capability {g['cpu_capability']}, AVX-512"
            f" {yes[g['cpu_avx512f']]}, AVX-512 BF16 {yes[g['cpu_avx512_bf16']]}, AMX BF16"
            f" {yes[g['cpu_amx_bf16']]}, GPU {g['gpu']}; {g['torch_threads']} torch threads;"
            f" python {g['version_python']}, torch {g['version_torch']}, transformers"
            f" {g['version_transformers']}, vllm {g['version_vllm']}, trl {g['version_trl']}"
            f"{probe}; commit `{str(g['git_commit'])[:7]}`{dirty}; {g['date_utc']} UTC,"
            f" {g['bench_seconds']} s; load average {g['load_avg_1min_start']} at start,"
            f" {g['load_avg_1min_end']} at the end; other work on the machine: {g['other_work']}."
        )
    kept = []
    if "cpu_model" in r:
        kept.append(f"{r['cpu_model']}, {r['cpu_count']} cores, {r['cpu_capability']}")
    if "torch_threads" in r:
        kept.append(f"{r['torch_threads']} torch threads")
    if "load_avg_1min_start" in r:
        kept.append(
            f"load average {r['load_avg_1min_start']} at start, {r['load_avg_1min_end']} at the end"
        )
    if "commit" in r:
        kept.append(f"commit `{r['commit']}`")
    line = f"**Run:** machine {OLD_FACTS}"
    return line + (f"; the file keeps only: {'; '.join(kept)}." if kept else ".")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def run_region(name: str) -> Callable[[Results], str]:
    def render(res: Results) -> str:
        return machine_line(res[name]) if name in res else absent(name)

    return render


def claim_line(r: dict, prefix: str) -> str:
    """ "claim: **verdict**", as the results file stores them."""
    stored = r.get(f"{prefix}_verdict", "no verdict recorded")
    return f"{r.get(f'{prefix}_claim', 'claim not recorded')}: **{stored}**"


# ---- pipeline ---------------------------------------------------------------------------------
STAGES = {
    "inputs": "inputs (digests of the files params name)",
    "model": "model (GGUF → safetensors)",
    "prepare": "prepare",
    "rollout": "rollout (vLLM)",
    "annotate": "annotate (OmegaPRM)",
    "critiques": "critiques (the generative PRM's targets)",
    "pairs": "pairs",
    "train_rm": "train_rm",
    "train_prm": "train_prm",
    "rl_rewards": "rl_rewards (digests of the reward models rl reads)",
    "rl": "rl (GRPO)",
    "rollout_rl": "rollout_rl (the RL policy on eval)",
    "search": "search (every test-time method at every budget)",
    "eval": "eval (scores, best-of-N, ProcessBench, claims, report)",
}
DEMO_TARGET_MIN = 30  # the issue's target for `dvc repro` on the CPU default


def stage_order(r: dict[str, Any]) -> list[str]:
    """The DVC stages a pipeline result timed, in the pipeline's order (unknown ones last)."""
    stages = [k[6:-2] for k in r if k.startswith("stage_") and k.endswith("_s")]
    return [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]


def pipeline_table(res: Results, name: str = "pipeline",
                   before: Sequence[str] = ("pipeline_before",)) -> str:  # fmt: skip
    """Seconds per step of the timed run `name`, beside earlier runs on the same kind of
    machine (`before`, newest first: e.g. the results files the run replaced) where kept."""
    if name not in res:
        return absent(name)
    r, bs = res[name], [res[b] for b in before if b in res]
    order = stage_order(r)
    keys = [("install_s", "install (`make install`: venv, pinned wheels, SmolLM2 package)")]
    keys += [(f"stage_{s}_s", STAGES.get(s, s)) for s in order]
    rows = [[label, f(r[k], 0), *(got(b, k, lambda x: f(x, 0)) for b in bs)] for k, label in keys]
    for key, label in (("dvc_repro_s", "`dvc repro`"), ("make_demo_s", "`make demo`")):
        bold = [f"**{f(r[key], 0)} ({minutes(r[key])})**"]
        bold += [f"**{f(b[key], 0)} ({minutes(b[key])})**" if key in b else "not recorded"
                 for b in bs]  # fmt: skip
        rows.append([f"**{label}**", *bold])
    header = ["step", "seconds"]
    if bs:
        header = ["step", f"seconds (`{r['commit']}`)", *(f"before (`{b['commit']}`)" for b in bs)]
    return table(header, rows)


def pipeline_findings(res: Results) -> str:
    if "pipeline" not in res:
        return absent("pipeline")
    r = res["pipeline"]
    repro = r["dvc_repro_s"] / 60
    out = [
        f"- Target `dvc repro` ≤ {DEMO_TARGET_MIN} minutes: {_met(repro <= DEMO_TARGET_MIN)}"
        f" ({f(repro, 1)} minutes).",
        *_pipeline_eval(r),
    ]
    if "make_test_s" in r:
        out.append(_pipeline_tests(r))
    missing = [
        label
        for prefix, label in (
            ("eval_policy_pass_at_", "pass@k beyond k = 1"),
            ("train_prm_", "the PRM's held-out metrics"),
            ("train_rm_", "the ORM's held-out metrics"),
        )
        if not any(k.startswith(prefix) for k in r)
    ]
    if missing:
        out.append(
            f"- Not in this results file: {', '.join(missing)} (bench/pipeline.py records them"
            " from its next run)."
        )
    with_ci = [k for k in r if f"{k}_ci95_lo" in r and k.startswith(("train_", "eval_"))]
    rows = [[f"`{k}`", f(r[k]), ci(r[f"{k}_ci95_lo"], r[f"{k}_ci95_hi"])] for k in with_ci]
    rows += [[f"`{k}`", f(r[k]), ""] for k in r if re.fullmatch(r"eval_policy_pass_at_\d+", k)]
    if rows:
        out += ["", "The run's metrics files:", "", table(["metric", "value", "95% CI"], rows)]
    return "\n".join(out)


def _pipeline_eval(r: dict) -> list[str]:
    """Base pass@1, best-of-N by selection rule, and the RL difference with its verdict."""
    rule = re.compile(r"best_of_(\d+)_(.+)")
    bon = {m.group(2): (m.group(1), v) for k, v in r.items() if (m := rule.fullmatch(k))}
    n = next(iter(bon.values()))[0]
    out = [
        f"- Eval (the run's `data/eval/metrics.json`): base pass@1 {f(r['eval_pass_at_1_base'])};"
        f" selection at N = {n}: "
        + ", ".join(
            f"{'random sample' if name == 'pass@1' else f'`{name}`'} {f(v)}"
            for name, (_, v) in sorted(bon.items(), key=lambda kv: -kv[1][1])
        )
        + " (no intervals recorded for these)."
    ]
    if "rl_minus_base_pass_at_1" in r:
        out.append(
            f"- RL: pass@1 {f(r['eval_pass_at_1_base'])} → {f(r['eval_pass_at_1_rl'])},"
            f" {sf(r['rl_minus_base_pass_at_1'])}"
            f" {ci(r['rl_minus_base_ci95_lo'], r['rl_minus_base_ci95_hi'], signed=True)};"
            f" {claim_line(r, 'rl_minus_base')}."
        )
    return out


def _pipeline_tests(r: dict) -> str:
    """`make test`'s time, exit code and outcome counts, as far as the file holds them."""
    kinds = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")
    counts = ", ".join(f"{r[f'make_test_{k}']} {k}" for k in kinds if f"make_test_{k}" in r)
    return (
        f"- `make test` on the same clone right after: {f(r['make_test_s'], 0)} s"
        f" ({f(r['make_test_s'] / 60, 1)} minutes)"
        + (f", exit code {r['make_test_exit_code']}" if "make_test_exit_code" in r else "")
        + (f"; {counts}" if counts else "; outcome counts not recorded")
        + "."
        + (f" Its slowest test phases:\n\n{slow}" if (slow := slowest(r, "make_test_")) else "")
    )


def slowest(r: dict, prefix: str = "") -> str:
    """The slowest test phases stored under `<prefix>slowest_<i>_{test,s}` (bench/suite.py's
    `parse`), as a table; "" if none."""
    rows = [[str(i), f"`{test}`", f(s, 1)] for i, (test, s) in enumerate(phases(r, prefix), 1)]
    return table(["#", "test (phase)", "seconds"], rows, right=2) if rows else ""


def phases(r: dict, prefix: str = "") -> list[tuple[str, float]]:
    """(test phase, seconds) stored under `<prefix>slowest_<i>_{test,s}`, slowest first."""
    key = f"{prefix}slowest_"
    slow = sorted(int(m.group(1)) for k in r if (m := re.fullmatch(rf"{key}(\d+)_s", k)))
    return [(r[f"{key}{i}_test"], r[f"{key}{i}_s"]) for i in slow]


def claims_rows(r: dict, prefix: str, ids: list[str], labels: dict[str, str] | None = None):
    """Table rows (claim, estimate [95% CI], n, verdict) of the claims stored under
    `<prefix><id>_*`, and the sorted set of their interval methods."""
    rows, methods = [], set()
    for i in ids:
        c = f"{prefix}{i}"
        est = r[f"{c}_estimate"]
        shown = (f"{sf(est)} {ci(r[f'{c}_ci95_lo'], r[f'{c}_ci95_hi'], signed=True)}"
                 if est == est else "undefined (NaN)")  # fmt: skip
        label = (labels or {}).get(i, r[f"{c}_claim"])
        rows.append([label, shown, f"{r[f'{c}_n']} {r[f'{c}_unit']}", f"**{r[f'{c}_verdict']}**"])
        methods.add(r[f"{c}_ci_method"])
    return rows, sorted(methods)


def pipeline_claims(res: Results, name: str = "pipeline") -> str:
    """The timed run's claims table (its report.md opens with the same), or why there is none."""
    if name not in res:
        return absent(name)
    r = res[name]
    ids = [k[len("eval_claims_") : -len("_verdict")] for k in r
           if k.startswith("eval_claims_") and k.endswith("_verdict")]  # fmt: skip
    if not ids:
        return "*This run predates the claims table (`eval.claims`); re-run bench/pipeline.py.*"
    first = ("rl_raises_pass1", "majority_beats_pass1")  # the report's order, then the rest
    ids = [i for i in first if i in ids] + [i for i in ids if i not in first]
    rows, methods = claims_rows(r, "eval_claims_", ids)
    return table(["claim", "estimate [95% CI]", "n", "verdict"], rows) + (
        "\n\n95% CI: " + "; ".join(methods) + "."
    )


def pipeline_dtype(res: Results, auto: str = "pipeline_avx512_bf16_5d4d6aa",
                   fp32: str = "pipeline_avx512_fp32_5d4d6aa") -> str:  # fmt: skip
    """The default run on a CPU with native bfloat16, at `dtype: auto` (bfloat16 there;
    `auto`) and with every engine and trainer set to float32 (`fp32`, the dtype every CPU
    computed in before `auto` read the flags), two runs of one commit one after the other:
    seconds per stage, the speed-up, RL's step times and peak RSS, and the dtypes the artifacts
    recorded."""
    if auto not in res:
        return absent(auto)
    a, b = res[auto], res.get(fp32)
    if b and b.get("commit") != a.get("commit"):
        return f"*`{fp32}.json` (`{b.get('commit')}`) is not of `{auto}.json`'s commit.*"
    order = stage_order(a)
    keys = [(f"stage_{s}_s", STAGES.get(s, s)) for s in order]
    keys += [("dvc_repro_s", "**`dvc repro`**")]

    def row(key: str, label: str) -> list[str]:
        cells = [label, f(a[key], 0)]
        if b:
            cells += [got(b, key, lambda x: f(x, 0))]
            cells += [f"{f(b[key] / a[key], 2)}×" if b.get(key) and a[key] else ""]
        return cells

    header = ["step", f"seconds, auto = {a.get('rl_train_dtype', 'not recorded')}"]
    if b:
        header += [f"seconds, {b.get('rl_train_dtype', 'float32')}", "speed-up"]
    out = [table(header, [row(k, label) for k, label in keys])]
    for r, name in ((a, "auto"), (b, "float32")):
        if not r or "rl_train_seconds_first" not in r:
            continue
        out.append(
            f"- RL at {name} ({r.get('rl_train_dtype', 'not recorded')}): {r['rl_train_steps']}"
            f" steps, first step {f(r['rl_train_seconds_first'], 1)} s, last"
            f" {f(r['rl_train_seconds_last'], 1)} s; RSS {f(r['rl_train_rss_gib_first'], 2)} GiB"
            f" after the first step, {f(r['rl_train_rss_gib_last'], 2)} after the last, peak"
            f" {f(r['rl_train_rss_gib_max'], 2)} GiB; train_prm computed in"
            f" {r.get('train_prm_dtype', 'not recorded')}."
        )
    if b and "params_overrides" in b:
        out.append(f"- The float32 run's overrides: `{b['params_overrides']}`.")
    if b:
        out += [
            "",
            "Do the results stay sound in bfloat16? The same figures from both runs (the"
            " rollouts differ: sampling follows the numerics):",
            "",
            _dtype_soundness(a, b),
        ]
    if not b:
        out.append(f"- The float32 run was not recorded (`{fp32}.json` is absent).")
    return "\n".join(out[:1] + ([""] if len(out) > 1 else []) + out[1:])


SEARCH_METHODS = {
    "majority": "majority vote (no RM)",
    "best_of_n": "best-of-N (PRM)",
    "weighted_vote": "weighted vote (PRM)",
    "beam": "beam search",
    "dvts": "DVTS",
    "particles": "particle filtering",
}


def search_budget(res: Results, name: str = "pipeline") -> str:
    """The search stage of a timed default run: accuracy [95% CI] and generated tokens per
    problem of every method at every budget, then the compute-optimal method per level."""
    if name not in res:
        return absent(name)
    r = res[name]
    point = re.compile(r"search_points_(\w+?)_(\d+)_accuracy")
    cells = {(m.group(1), int(m.group(2))) for k in r if (m := point.fullmatch(k))}
    if not cells:
        return "*This run has no search stage results (`data/search/metrics.json`).*"
    budgets = sorted({n for _, n in cells})
    methods = [m for m in SEARCH_METHODS if any((m, n) in cells for n in budgets)]

    def cell(prefix: str) -> str:
        return (
            f"{f(r[f'{prefix}_accuracy'])} {ci(r[f'{prefix}_ci95_lo'], r[f'{prefix}_ci95_hi'])},"
            f" {f(r[f'{prefix}_tokens_per_problem'], 0)} tok"
        )

    rows = [
        [SEARCH_METHODS[m]]
        + [cell(f"search_points_{m}_{n}") if (m, n) in cells else "" for n in budgets]
        for m in methods
    ]
    out = [
        f"{r['search_problems']} problems; PRM aggregation `{r['search_aggregation']}`; each"
        " cell: accuracy [95% CI], generated tokens per problem. 95% CI: "
        f"{r['search_ci_method']}.",
        "",
        table(["method", *[f"N = {n}" for n in budgets]], rows),
    ]
    best = re.compile(r"search_compute_optimal_(\w+?)_(\d+)_method")
    found = sorted(
        {(m.group(1), int(m.group(2))) for k in r if (m := best.fullmatch(k))},
        key=lambda x: (x[0] == "all", x[0] == "unknown", x[0], x[1]),
    )
    if found:
        opt = [
            [
                level,
                str(n),
                SEARCH_METHODS.get(r[f"search_compute_optimal_{level}_{n}_method"], "?"),
                cell(f"search_compute_optimal_{level}_{n}"),
                f"{r[f'search_compute_optimal_{level}_{n}_problems']}",
            ]
            for level, n in found
        ]
        out += [
            "",
            "The best method per difficulty level and budget (the compute-optimal table; ties go"
            " to fewer tokens):",
            "",
            table(["level", "N", "best method", "accuracy [95% CI], tokens", "problems"], opt),
        ]
    vs = re.compile(r"search_versus_majority_(\w+?)_(\d+)_estimate")
    against = sorted(
        {(m.group(1), int(m.group(2))) for k in r if (m := vs.fullmatch(k))},
        key=lambda x: (list(SEARCH_METHODS).index(x[0]), x[1]),
    )
    if against:
        rows = []
        for m, n in against:
            k = f"search_versus_majority_{m}_{n}"
            ratio = r.get(f"{k}_tokens_ratio")
            rows.append([SEARCH_METHODS[m], str(n), f"{sf(r[f'{k}_estimate'])} "
                         f"{ci(r[f'{k}_ci95_lo'], r[f'{k}_ci95_hi'], signed=True)}",
                         str(r[f"{k}_n"]), f(ratio, 2) if ratio is not None else "-",
                         r[f"{k}_verdict"]])  # fmt: skip
        out += [
            "",
            "Each reward-model method against the plain majority vote at the same N (paired per"
            f" problem; {r['search_versus_majority_ci_method']}):",
            "",
            table(
                [
                    "method",
                    "N",
                    "difference [95% CI]",
                    "problems",
                    "tokens / majority's",
                    "verdict",
                ],
                rows,
            ),  # fmt: skip
        ]
    return "\n".join(out)


SUITE_TARGET_MIN = 20  # the issue's target for the test suite on 2 cores


def suite(res: Results, name: str = "suite") -> str:
    """The suite's wall time against the target, its outcome counts and its slowest tests."""
    if name not in res:
        return absent(name)
    r = res[name]
    minutes_ = r["suite_s"] / 60
    kinds = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")
    counts = ", ".join(f"{r[f'tests_{k}']} {k}" for k in kinds if f"tests_{k}" in r)
    out = [
        f"- `python -m pytest` (what `make test` and CI run): {f(r['suite_s'], 0)} s"
        f" ({f(minutes_, 1)} minutes), exit code {r['suite_exit_code']}; {counts}.",
        f"- Target ≤ {SUITE_TARGET_MIN} minutes on 2 cores: {_met(minutes_ <= SUITE_TARGET_MIN)}"
        f" on this machine.",
        "",
    ]
    return "\n".join(out) + "\n" + slowest(r)


def suite_before_after(res: Results, after: str = "suite", before: str = "pipeline") -> str:
    """The suite's ten slowest test phases now (`after`, bench/suite.py) beside the same phases
    in an earlier `make test` on the same kind of machine (`before`: bench/pipeline.py --tests),
    and the two totals."""
    if after not in res or "make_test_pytest_s" not in res.get(before, {}):
        return absent(after if after not in res else before)
    a, b = res[after], res[before]
    now, was = phases(a), dict(phases(b, "make_test_"))
    rows = [[str(i), f"`{test}`", f(was[test], 1) if test in was else "not among the ten",
             f(s, 1)] for i, (test, s) in enumerate(now, 1)]  # fmt: skip
    gone = [t for t in was if t not in dict(now)]
    out = (f"- Whole suite: {f(b['make_test_pytest_s'], 0)} s at `{b['commit']}` → "
           f"{f(a['suite_s'], 0)} s at `{a.get('git_commit', '?')[:7]}` "
           f"({f(a['suite_s'] / 60, 1)} minutes; target ≤ {SUITE_TARGET_MIN}: "
           f"{_met(a['suite_s'] / 60 <= SUITE_TARGET_MIN)}).")  # fmt: skip
    out += "\n\n" + table(["#", "test (phase)", "before, s", "after, s"], rows, right=2)
    if gone:
        out += "\n\nOut of the ten since: " + ", ".join(
            f"`{t}` ({f(was[t], 1)} s)" for t in gone) + "."  # fmt: skip
    return out


def suite_minutes(res: Results, name: str = "suite") -> str:
    """A suite run (bench/suite.py; `suite`: the latest AVX2 one): minutes and commit, inline."""
    r = res[name]
    dirty = " with uncommitted changes" if r.get("git_dirty") else ""
    return f"{f(r['suite_s'] / 60, 1)} minutes at commit `{r['git_commit'][:7]}`{dirty}"


def suite_parallel(res: Results) -> str:
    """The suite under pytest-xdist against the serial run of the same session."""
    if "suite_avx512_xdist" not in res:
        return absent("suite_avx512_xdist")
    x, s = res["suite_avx512_xdist"], res.get("suite_avx512")
    kinds = ("passed", "failed", "skipped", "xfailed")
    counts = ", ".join(f"{x[f'tests_{k}']} {k}" for k in kinds if f"tests_{k}" in x)
    out = (
        f"- `python -m pytest {x['pytest_args']}`: {f(x['suite_s'], 0)} s"
        f" ({f(x['suite_s'] / 60, 1)} minutes), exit code {x['suite_exit_code']}; {counts}."
    )
    if s:
        out += (f"\n- The serial run above: {f(s['suite_s'], 0)} s; parallel over serial:"
                f" {f(x['suite_s'] / s['suite_s'], 2)}×.")  # fmt: skip
    return out


def _dtype_soundness(a: dict, b: dict) -> str:
    """Side by side, the results of the two dtype runs, with their intervals."""

    def est(r: dict, key: str, ci_of: str = "", signed: bool = False) -> str:
        if key not in r:
            return "not recorded"
        lo, hi = r.get(f"{ci_of or key}_ci95_lo"), r.get(f"{ci_of or key}_ci95_hi")
        return (sf if signed else f)(r[key]) + (
            f" {ci(lo, hi, signed=signed)}" if lo is not None else ""
        )

    majority = "eval_claims_majority_beats_pass1"
    rows = [
        ["base pass@1"] + [est(r, "eval_pass_at_1_base") for r in (a, b)],
        ["RL − base pass@1"]
        + [
            est(r, "rl_minus_base_pass_at_1", "rl_minus_base", signed=True)
            + f", {r.get('rl_minus_base_verdict', 'no verdict')}"
            for r in (a, b)
        ],
        ["majority at N = 4 − pass@1"]
        + [
            est(r, f"{majority}_estimate", majority, signed=True)
            + f", {r.get(f'{majority}_verdict', 'no verdict')}"
            for r in (a, b)
        ],
        ["PRM held-out step AUC"] + [est(r, "train_prm_step_auc") for r in (a, b)],
        ["PRM final training loss"] + [est(r, "train_prm_final_loss") for r in (a, b)],
        ["ORM held-out outcome AUC"] + [est(r, "train_rm_outcome_auc") for r in (a, b)],
        ["ORM final training loss"] + [est(r, "train_rm_final_loss") for r in (a, b)],
    ]
    return table(["figure", "auto (bfloat16)", "float32"], rows)


def pipeline_avx512_summary(res: Results) -> str:
    """One sentence for the README: the AMX/AVX-512 BF16 machine's `dvc repro` of the current
    default, and the matched auto / float32 pair of an earlier commit."""
    if "pipeline_avx512" not in res:
        return "not measured yet"
    a = res["pipeline_avx512"]
    out = (
        f"{f(a['dvc_repro_s'] / 60, 1)} minutes at commit `{a['commit']}` on"
        f" {a['cpu_model']} with AMX BF16 {'yes' if a.get('cpu_amx_bf16') else 'no'}"
        f" (`dtype: auto` = {a.get('rl_train_dtype', 'not recorded')})"
    )
    b, c = res.get("pipeline_avx512_bf16_5d4d6aa"), res.get("pipeline_avx512_fp32_5d4d6aa")
    if b and c:
        out += (
            f"; at commit `{c['commit']}`, {f(b['dvc_repro_s'] / 60, 1)} minutes in bfloat16"
            f" against {f(c['dvc_repro_s'] / 60, 1)} with every dtype set to float32"
        )
    return out


def pipeline_install_minutes(res: Results) -> str:
    return f(res["pipeline"]["install_s"] / 60, 1)


def pipeline_dvc_repro_minutes(res: Results) -> str:
    return f(res["pipeline"]["dvc_repro_s"] / 60, 1)


def rl_grpo_delta(res: Results) -> str:
    """bench/rl.py's verifiable-reward RL gain, with its interval and problem count."""
    r = res["rl"]
    interval = ci(r["grpo_delta_ci95_lo"], r["grpo_delta_ci95_hi"], signed=True)
    return f"{sf(r['grpo_delta'])} {interval} on {r['grpo_problems']} problems"


def rl_seeds_summary(res: Results) -> str:
    """The shipped RL recipe across seeds: mean gain, t interval, verdict, runs shown alone."""
    if "rl_seeds" not in res or "seeds" not in res["rl_seeds"]:
        return absent("rl_seeds")
    r = res["rl_seeds"]
    interval = ci(r["seeds_delta_ci95_lo"], r["seeds_delta_ci95_hi"], signed=True)
    return (
        f"{sf(r['seeds_delta_mean'])} {interval} over {r['seeds']} seeds ({r['seeds_verdict']};"
        f" {r['seeds_shown_alone']} of the {r['seeds']} runs shown on their own interval)"
    )


def pipeline_majority(res: Results) -> str:
    """The timed default run's self-consistency claim: estimate, interval, N and verdict."""
    r, c = res["pipeline"], "eval_claims_majority_beats_pass1"
    n = re.search(r"N=(\d+)", r[f"{c}_claim"]).group(1)
    return (f"{sf(r[f'{c}_estimate'])} {ci(r[f'{c}_ci95_lo'], r[f'{c}_ci95_hi'], signed=True)} "
            f"at N = {n} ({r[f'{c}_verdict']})")  # fmt: skip


def pipeline_make_test_minutes(res: Results) -> str:
    r = res["pipeline"]
    return f(r["make_test_s"] / 60, 1) if "make_test_s" in r else "(not timed)"


def pipeline_commit(res: Results) -> str:
    return f"`{res['pipeline']['commit']}`"


def pipeline_machine(res: Results) -> str:
    r = res["pipeline"]
    if r.get("machine_facts_version"):
        return f"{r['cpu_model']}, {r['cpu_count']} cores, {r['gpu']} GPU"
    return f"machine {OLD_FACTS}"


# ---- rollout ----------------------------------------------------------------------------------
# Three results files: rollout.json (an AVX2 machine: float32), rollout_avx512.json (AMX) and
# rollout_avx512_noamx.json (AVX-512 BF16 without AMX), where `dtype: auto` is bfloat16; each
# renders its own regions.
VARIANTS = {  # key suffix at the top size -> (engine, label)
    "compiled": ("vllm", "vLLM with torch.compile (`enforce_eager: false`)"),
    "compiled_warm": ("vllm", "vLLM with torch.compile, again on the compile cache it wrote"),
    "mp_engine": ("vllm", "vLLM multiprocess engine"),
    "mp_engine_bind_all": ("vllm", "vLLM multiprocess engine, OMP bound to every core"),
    "threads1": ("vllm", "vLLM on 1 thread"),
    "fp32": ("vllm", "vLLM float32"),
    "bf16": ("vllm", "vLLM bfloat16"),
    "compiled_bf16": ("vllm", "vLLM compiled, bfloat16"),
    "hf_fp32": ("hf", "transformers float32"),
    "hf_bf16": ("hf", "transformers bfloat16"),
}


def _sizes(r: dict) -> list[int]:
    return sorted(int(m.group(1)) for k in r if (m := re.fullmatch(r"vllm_tokens_per_s_(\d+)", k)))


def _dtype(r: dict) -> str:
    """What the default runs computed in (files before `auto_dtype` ran float32)."""
    return r.get("auto_dtype", "float32")


def rollout_table(res: Results, name: str = "rollout") -> str:
    if name not in res:
        return absent(name)
    r = res[name]
    rows = [
        [
            str(n),
            f(r[f"vllm_tokens_per_s_{n}"], 1),
            f(r[f"hf_tokens_per_s_{n}"], 1),
            f"**{f(r[f'ratio_vllm_over_hf_{n}'], 2)}×**",
            f"{r[f'vllm_pct_of_limit_{n}']}%",
            f"{r[f'hf_pct_of_limit_{n}']}%",
            f"{r[f'peak_rss_mib_vllm_{n}']} / {r[f'peak_rss_mib_hf_{n}']}",
        ]
        for n in _sizes(r)
    ]
    header = [
        "concurrent sequences",
        f"vLLM tokens/s ({_dtype(r)})",
        f"transformers tokens/s ({_dtype(r)})",
        "vLLM / hf",
        "vLLM % of limit",
        "hf % of limit",
        "peak RSS vLLM / hf (MiB)",
    ]
    out = table(header, rows, right=0)
    top = max(_sizes(r))
    if f"vllm_engine_start_s_{top}" in r:
        out += (
            f"\n\nEngine start (load to ready) at {top} sequences: vLLM"
            f" {r[f'vllm_engine_start_s_{top}']} s, transformers {r[f'hf_engine_start_s_{top}']} s."
        )
    return out


def rollout_limit(res: Results, name: str = "rollout") -> str:
    if name not in res:
        return absent(name)
    r = res[name]
    tag = {"float32": "fp32", "bfloat16": "bf16"}[_dtype(r)]
    drift = ""
    if f"matmul_gflops_{tag}_m64_before" in r:
        drift = (
            f" The 64-row rate measured {r[f'matmul_gflops_{tag}_m64_before']} GFLOP/s before the"
            f" engines ran and {r[f'matmul_gflops_{tag}_m64_after']} after, in the same run."
        )
    fp32 = ""
    if tag != "fp32":
        fp32 = (
            f" In float32 the same shapes run at {r['matmul_gflops_fp32_m1024']} GFLOP/s (1024"
            f" rows) and {r['matmul_gflops_fp32_m64']} (64 rows): a limit of"
            f" {f(r['compute_limit_fp32_tokens_per_s'], 0)} tokens/s."
        )
    return (
        f"**Compute limit.** {r['flops_per_token_mflop']} MFLOP per generated token (2 × every"
        " matmul parameter, lm_head included, plus attention at the mean context) against the"
        f" best {_dtype(r)} matmul rate measured with torch at the model's own shapes in the same"
        f" run ({r[f'matmul_gflops_{tag}_m1024']} GFLOP/s at 1024 rows,"
        f" {r[f'matmul_gflops_{tag}_m64']} at 64 rows):"
        f" **{f(r['compute_limit_tokens_per_s'], 0)} tokens/s**"
        f" ({f(r['compute_limit_m64_tokens_per_s'], 0)} at the 64-row rate).{drift}{fp32}"
    )


def rollout_variants(res: Results, name: str = "rollout") -> str:
    if name not in res:
        return absent(name)
    r = res[name]
    top = max(_sizes(r))
    default, hf = r[f"vllm_tokens_per_s_{top}"], r[f"hf_tokens_per_s_{top}"]
    rows = [
        [
            f"vLLM default (eager, in-process engine, {_dtype(r)},"
            f" {r.get('torch_threads', '?')} threads)",
            f(default, 1),
            f"{r[f'vllm_pct_of_limit_{top}']}%",
            "1.00×",
            got(r, f"vllm_engine_start_s_{top}", lambda x: f"{x} s"),
        ]
    ]
    not_run = []
    for variant, (engine, label) in VARIANTS.items():
        short = variant.removeprefix(f"{engine}_")
        key = f"{engine}_tokens_per_s_{top}_{short}"
        start = got(r, f"{engine}_engine_start_s_{top}_{short}", lambda x: f"{x} s")
        if key in r:
            ref, of = (default, "") if engine == "vllm" else (hf, f" (of hf {_dtype(r)})")
            pct_key = key.replace("tokens_per_s", "pct_of_limit")
            rows.append(
                [label, f(r[key], 1), f"{r[pct_key]}%", f"{f(r[key] / ref, 2)}×{of}", start]
            )
        elif f"{key}_timed_out_after_s" in r:
            rows.append(
                [label, f"timed out after {f(r[f'{key}_timed_out_after_s'], 0)} s", "", "", ""]
            )
        else:
            not_run.append(f"`{variant}`")
    header = ["variant", "tokens/s", "% of limit", "vs default vLLM", "engine start"]
    out = table(header, rows)
    if not_run:
        out += f"\n\nNot run in this results file: {', '.join(not_run)}."
    return out


MACHINE_KEYS = ("cpu_model", "cpu_capability", "cpu_avx512_bf16", "cpu_amx_tile", "cpu_count")


def _gemm_bound(res: Results, r: dict, size: int) -> str:
    """ ", against a GEMM-only bound of X%" where bench/rollout_profile.py measured this kind of
    machine at this batch; "." otherwise."""
    p = res.get("rollout_profile", {})
    key = f"matmul_only_pct_of_limit_{size}"
    if key not in p or any(p.get(k) != r.get(k) for k in MACHINE_KEYS):
        return "."
    return (
        f'; the GEMMs alone would reach {p[key]}% on this kind of machine ("Where a vLLM decode'
        ' step goes").'
    )


def rollout_targets(res: Results, name: str = "rollout") -> str:
    if name not in res:
        return absent(name)
    r = res[name]
    top, low = max(_sizes(r)), min(_sizes(r))
    pct_v, pct_h = r[f"vllm_pct_of_limit_{top}"], r[f"hf_pct_of_limit_{top}"]
    ratio = r[f"ratio_vllm_over_hf_{top}"]
    compiled = r.get(f"vllm_pct_of_limit_{top}_compiled_warm") or r.get(
        f"vllm_pct_of_limit_{top}_compiled"
    )
    out = [
        f"- ≥ 80% of the compute limit ({_dtype(r)}) at {top} sequences: {_met(pct_v >= 80)}"
        f" ({pct_v}%"
        + (f"; {compiled}% compiled)" if compiled else ")")
        + _gemm_bound(res, r, top),
        f"- vLLM ≥ 1.5× transformers at {top} sequences: "
        f"{_met(ratio >= 1.5)} ({f(ratio, 2)}×); 1.5× would need vLLM at"
        f" {f(1.5 * pct_h, 1)}% of the limit (transformers is at {pct_h}%).",
        f"- vLLM's lead over transformers: {f(r[f'ratio_vllm_over_hf_{low}'], 2)}× at {low}"
        f" sequences, {f(ratio, 2)}× at {top}.",
    ]
    default = r[f"vllm_tokens_per_s_{top}"]
    for variant, what in (("compiled", "first start"), ("compiled_warm", "warm cache")):
        if f"vllm_tokens_per_s_{top}_{variant}" in r:
            start = r.get(f"vllm_engine_start_s_{top}_{variant}")
            eager = r.get(f"vllm_engine_start_s_{top}")
            speed = r[f"vllm_tokens_per_s_{top}_{variant}"] / default
            out.append(
                f"- torch.compile ({what}): {f(speed, 2)}× the eager engine's tokens/s"
                + (f"; engine start {start} s against {eager} s eager." if start and eager else ".")
            )
    other = {"float32": "bf16", "bfloat16": "fp32"}[_dtype(r)]
    if f"vllm_tokens_per_s_{top}_{other}" in r:
        name = "bfloat16" if other == "bf16" else "float32"
        out.append(
            f"- {_dtype(r)} (the auto dtype) against {name}:"
            f" {f(default / r[f'vllm_tokens_per_s_{top}_{other}'], 2)}× on vLLM"
            + (
                f", {f(r[f'hf_tokens_per_s_{top}'] / r[f'hf_tokens_per_s_{top}_{other}'], 2)}×"
                " on transformers"
                if f"hf_tokens_per_s_{top}_{other}" in r
                else ""
            )
            + f" (CPU capability {r.get('cpu_capability', 'not recorded')})."
        )
    return "\n".join(out)


def rollout_regions(name: str) -> dict[str, Callable[[Results], str]]:
    """The five regions one rollout results file renders (`<name>_run`, `_table`, `_limit`,
    `_variants`, `_targets`): one family per machine."""
    return {
        f"{name}_run": run_region(name),
        f"{name}_table": lambda res: rollout_table(res, name),
        f"{name}_limit": lambda res: rollout_limit(res, name),
        f"{name}_variants": lambda res: rollout_variants(res, name),
        f"{name}_targets": lambda res: rollout_targets(res, name),
    }


PROFILE_ROWS = (
    ("matmul", "matmul (oneDNN GEMMs: projections, MLP, lm_head)"),
    ("attention", "paged attention and KV-cache writes"),
    ("sampling", "sampling (Gumbel-max over the vocabulary, log-softmax for the logprob)"),
    ("other_ops", "other tensor ops (norms, activations, rotary, casts)"),
    ("engine_python", "engine and Python (scheduler, inputs, outputs; profiler overhead)"),
)


def rollout_profile_table(res: Results, name: str = "rollout_profile") -> str:
    """Milliseconds per decode step by kind of work, each size; then the GEMM-only bound."""
    if name not in res:
        return absent(name)
    r = res[name]
    sizes = sorted(int(k.rsplit("_", 1)[1]) for k in r if k.startswith("tokens_per_s_"))
    rows = [
        [what, *(f"{f(r[f'step_ms_{key}_{n}'], 1)} ({r[f'share_pct_{key}_{n}']}%)" for n in sizes)]
        for key, what in PROFILE_ROWS
    ]
    rows.append(["whole step, profiled", *(f(r[f"step_ms_{n}"], 1) for n in sizes)])
    rows.append(["whole step, not profiled", *(f(r[f"step_ms_unprofiled_{n}"], 1) for n in sizes)])
    header = ["ms per decode step (share)", *(f"{n} sequences" for n in sizes)]
    lines = [
        table(header, rows),
        "",
        f"Limit {f(r['compute_limit_tokens_per_s'], 0)} tokens/s ({r['auto_dtype']}: "
        f"{r['matmul_gflops_m1024']} GFLOP/s at 1024 rows, {r['matmul_gflops_m64']} at 64, "
        f"{r['flops_per_token_mflop']} MFLOP per token), measured in the same run.",
        "",
    ]
    for n in sizes:
        lines.append(
            f"- {n} sequences: vLLM {r[f'tokens_per_s_{n}']} tokens/s, "
            f"**{r[f'pct_of_limit_{n}']}% of the limit**. Its GEMMs run at "
            f"{r[f'engine_matmul_gflops_{n}']} GFLOP/s (prefill included); with every other "
            f"second of the call removed it would make {r[f'matmul_only_tokens_per_s_{n}']} "
            f"tokens/s, **{r[f'matmul_only_pct_of_limit_{n}']}% of the limit**: the most any "
            "engine running these GEMMs could reach at this batch."
        )
    return "\n".join(lines)


def rollout_bf16_slowdown(res: Results) -> str:
    r = res["rollout"]
    top = max(_sizes(r))
    return f(r[f"vllm_tokens_per_s_{top}"] / r[f"vllm_tokens_per_s_{top}_bf16"], 1)


def rollout_cpu_capability(res: Results) -> str:
    return res["rollout"].get("cpu_capability", "not recorded")


# ---- annotate ---------------------------------------------------------------------------------
def annotate_cost(res: Results) -> str:
    if "annotate" not in res:
        return absent("annotate")
    r = res["annotate"]
    setup = (
        f"{r['rollouts']} rollouts"
        + (f" ({r['problems']} problems × {r['rollouts_per_problem']})" if "problems" in r else "")
        + f", {pct(r['rollout_correct_fraction'])} correct; k = {r['k']}, k_first = {r['k_first']}."
    )
    rows = [
        ["generated tokens", f"{r['mc_tokens']:,}", f"{r['omegaprm_tokens']:,}"],
        [
            "tokens per rollout",
            f(r["mc_tokens_per_rollout"], 1),
            f(r["omegaprm_tokens_per_rollout"], 1),
        ],
        [
            "wall seconds per rollout",
            f(r["mc_seconds_per_rollout"], 2),
            f(r["omegaprm_seconds_per_rollout"], 2),
        ],
        [
            "tokens per sampled step label",
            f(r["mc_tokens_per_sampled_step"], 1),
            f(r["omegaprm_tokens_per_sampled_step"], 1),
        ],
    ]
    for unit, label in (("labelled_rollout", "rollout given step labels"),
                        ("first_error", "first-error decision")):  # fmt: skip
        for what, digits in (("tokens", 1), ("seconds", 2)):
            keys = [f"{m}_{what}_per_{unit}" for m in ("mc", "omegaprm")]
            if all(r.get(k) is not None for k in keys):
                rows.append([f"{what} per {label}"] + [f(r[k], digits) for k in keys])
            else:
                rows.append([f"{what} per {label}", "not recorded", "not recorded"])
    ratio, agree = r["ratio_tokens_omegaprm_over_mc"], r["first_error_agreement"]
    wall = r["omegaprm_seconds_per_rollout"] / r["mc_seconds_per_rollout"]
    rate = {
        m: r[f"{m}_tokens_per_rollout"] / r[f"{m}_seconds_per_rollout"] for m in ("mc", "omegaprm")
    }
    notes = [
        f"- OmegaPRM / MC tokens: **{f(ratio)}** (target ≤ 1/3: {_met(ratio <= 1 / 3)}).",
        f"- Same first wrong step on the rollouts both searched: **{pct(agree)}** of"
        f" {r['searched_rollouts_both']} (target ≥ 90%:"
        f" {_met(agree >= 0.9)}).",
        f"- {r['omegaprm_too_hard_rollouts']} of the {r['incorrect_rollouts']} incorrect rollouts"
        " were `too_hard` for OmegaPRM.",
        f"- OmegaPRM / MC wall time: {f(wall, 2)}× against {f(ratio, 2)}× in tokens; engine"
        f" throughput {f(rate['omegaprm'], 0)} tokens/s for OmegaPRM against"
        f" {f(rate['mc'], 0)} for MC.",
    ]
    return (
        setup
        + "\n\n"
        + table(["", "mc (Math-Shepherd)", "omegaprm"], rows)
        + "\n\n"
        + ("\n".join(notes))
    )


def annotate_cache(res: Results) -> str:
    if "annotate" not in res:
        return absent("annotate")
    r = res["annotate"]
    same = r["mc_tokens"] == r["mc_tokens_prefix_cache_off"]
    tokens = (
        f"identical work: {r['mc_tokens']:,} tokens both ways"
        if same
        else f"{r['mc_tokens']:,} tokens with the cache, {r['mc_tokens_prefix_cache_off']:,}"
        " without"
    )
    return (
        "**Prefix caching.** The same `mc` run with vLLM's prefix cache off:"
        f" {f(r['mc_seconds_prefix_cache_off'], 1)} s against"
        f" {f(r['mc_seconds_prefix_cache_on'], 1)} s on,"
        f" **{f(r['ratio_seconds_cache_off_over_on'], 2)}×** slower ({tokens})."
    )


def annotate_processbench(res: Results) -> str:
    # the labelling-cost run may skip ProcessBench (--processbench 0); an earlier run's figures
    # are then kept in annotate_processbench.json, with that run's own machine line
    name = next((n for n in ("annotate", "annotate_processbench")
                 if "processbench_solutions" in res.get(n, {})), None)  # fmt: skip
    if name is None:
        return "*ProcessBench: not run in `bench/results/annotate.json`.*"
    r = res[name]
    source = (
        "" if name == "annotate" else f"From `bench/results/{name}.json`. {machine_line(r)}\n\n"
    )
    n = r["processbench_solutions"]
    length = got(r, "processbench_max_new_tokens", lambda t: f"at most {t} tokens")
    setup = (
        f"{n} solutions ({n - n // 2} with a human first-error index, {n // 2} judged correct),"
        f" k = {r['k']}, completion length {length}."
    )
    rows = []
    for m in ("mc", "omegaprm"):
        p = f"processbench_{m}_"
        cells = [
            f"{f(r[p + k])} {ci(r[p + k + '_ci95_lo'], r[p + k + '_ci95_hi'])}"
            for k in ("acc_erroneous", "acc_correct", "f1")
        ]
        cells[2] = "**" + cells[2].replace(" [", "** [", 1)
        rows.append([m, *cells, f"{r[p + 'tokens']:,}", f(r[p + "seconds"], 1)])
    header = [
        "",
        "acc. erroneous [95% CI]",
        "acc. correct [95% CI]",
        "ProcessBench F1 [95% CI]",
        "tokens",
        "seconds",
    ]
    tail = f"{r['processbench_omegaprm_too_hard']} of the {n} solutions were `too_hard` for"
    tail += " OmegaPRM."
    return source + setup + "\n\n" + table(header, rows) + "\n\n" + tail


# ---- train ------------------------------------------------------------------------------------
TRAIN_TARGET = 1.5  # rwpipe / TRL real tokens/s


def train_table(res: Results) -> str:
    if "train" not in res:
        return absent("train")
    r = res["train"]
    setup = (
        f"{r['solutions']} solutions, batch {r['batch_size']}, epochs {r['epochs']}:"
        f" {r['rwpipe_steps']} optimizer steps for rwpipe, {r['trl_steps']} for TRL."
    )
    rows = [
        ["real tokens", f"{r['rwpipe_real_tokens']:,}", f"{r['trl_real_tokens']:,}"],
        ["training seconds", f(r["rwpipe_seconds"], 1), f(r["trl_seconds"], 1)],
        [
            "real tokens/s",
            f"**{f(r['rwpipe_real_tokens_per_s'], 1)}**",
            f(r["trl_real_tokens_per_s"], 1),
        ],
        ["peak RSS (MiB)", f"{r['rwpipe_peak_rss_mib']:,}", f"{r['trl_peak_rss_mib']:,}"],
        [
            "loss, first → last step",
            f"{f(r['rwpipe_first_loss'])} → {f(r['rwpipe_last_loss'])}",
            f"{f(r['trl_first_loss'])} → {f(r['trl_last_loss'])}",
        ],
    ]
    ratio = r["ratio_tokens_per_s_rwpipe_over_trl"]
    notes = [
        f"- Throughput: **{f(ratio, 2)}×** TRL's (target ≥ {TRAIN_TARGET}×:"
        f" {'met' if ratio >= TRAIN_TARGET else '**not met**'}).",
        f"- Peak RSS: {f(r['rwpipe_peak_rss_mib'] / r['trl_peak_rss_mib'], 2)}× TRL's.",
    ]
    return (
        setup + "\n\n" + table(["", "rwpipe", "TRL PRMTrainer"], rows) + "\n\n" + "\n".join(notes)
    )


# ---- judge probe ------------------------------------------------------------------------------
def _keys(r: dict) -> list[str]:
    pre = "boxed_judge_fp_"
    return [k[len(pre) :] for k in r if k.startswith(pre) and k != pre + "mean"]


def judge_probe_table(res: Results) -> str:
    if "judge_probe" not in res:
        return absent("judge_probe")
    r = res["judge_probe"]
    rows = [
        [
            f"`{key}`",
            f"{f(r[f'boxed_judge_fp_{key}'])} / {f(r[f'boxed_judge_abstained_{key}'])}",
            f"{f(r[f'boxed_or_sentence_judge_fp_{key}'])} /"
            f" {f(r[f'boxed_or_sentence_judge_abstained_{key}'])}",
            "—",
        ]
        for key in _keys(r)
    ]
    rows.append(
        [
            "**mean**",
            f"**{f(r['boxed_judge_fp_mean'])}** / {f(r['boxed_judge_abstained_mean'])}",
            f"**{f(r['boxed_or_sentence_judge_fp_mean'])}** /"
            f" {f(r['boxed_or_sentence_judge_abstained_mean'])}",
            f"**{f(r['rule_fp_mean'])}**",
        ]
    )
    header = [
        "master key",
        "judge FP / abstained, `boxed`",
        "judge FP / abstained, `boxed_or_sentence`",
        "rule verifier FP",
    ]
    return table(header, rows)


def judge_probe_notes(res: Results) -> str:
    if "judge_probe" not in res:
        return absent("judge_probe")
    r = res["judge_probe"]
    items = r["problems"] * len(_keys(r))
    fooled = sorted(_keys(r), key=lambda k: -r[f"boxed_or_sentence_judge_fp_{k}"])
    worst = ", ".join(
        f"`{k}` {pct(r[f'boxed_or_sentence_judge_fp_{k}'], 0)}"
        for k in fooled
        if r[f"boxed_or_sentence_judge_fp_{k}"] > 0
    )
    seconds = "; ".join(
        f"`{p}` {minutes(r[f'{p}_probe_seconds'])}"
        for p in ("boxed", "boxed_or_sentence")
        if f"{p}_probe_seconds" in r
    )
    return "\n".join(
        [
            f"- {r['problems']} problems × {len(_keys(r))} keys = {items} items per parser.",
            f"- `boxed`: false-positive rate {f(r['boxed_judge_fp_mean'])}, abstained on"
            f" {pct(r['boxed_judge_abstained_mean'])} of the items.",
            "- `boxed_or_sentence`: judges"
            f" {pct(1 - r['boxed_or_sentence_judge_abstained_mean'])} of the items; mean"
            f" false-positive rate {pct(r['boxed_or_sentence_judge_fp_mean'])} over keys; per"
            f" key, most fooled first: {worst}.",
            f"- Rule verifier: {round(r['rule_fp_mean'] * items)} of {items} accepted.",
            f"- `max_new_tokens`: {r['boxed_max_new_tokens']} (`boxed`),"
            f" {r['boxed_or_sentence_max_new_tokens']} (`boxed_or_sentence`).",
            f"- Wall time: {seconds or 'not recorded (the probe outputs predate the timing)'}.",
        ]
    )


def judge_probe_boxed_abstained(res: Results) -> str:
    return pct(res["judge_probe"]["boxed_judge_abstained_mean"], 0)


# ---- rl ---------------------------------------------------------------------------------------
def _delta(r: dict, v: str) -> str:
    return (
        f"{sf(r[f'{v}_delta'])} {ci(r[f'{v}_delta_ci95_lo'], r[f'{v}_delta_ci95_hi'], signed=True)}"
    )


def _first_last(r: dict, key: str, digits: int = 3) -> str:
    a, b = r.get(f"{key}_first"), r.get(f"{key}_last")
    return "not recorded" if a is None or b is None else f"{f(a, digits)} → {f(b, digits)}"


def rl_table(res: Results) -> str:
    if "rl" not in res or "grpo_delta" not in res["rl"]:
        return absent("rl")
    r = res["rl"]
    rows = [
        ["eval pass@1", f(r["grpo_pass_at_1_base"]), f"**{f(r['grpo_pass_at_1_rl'])}**"],
        [
            "mean completion tokens",
            f(r["grpo_mean_tokens_base"], 1),
            f(r["grpo_mean_tokens_rl"], 1),
        ],
    ]
    return table(["", "base", f"after {r['grpo_rl_steps']} GRPO steps"], rows)


def rl_notes(res: Results) -> str:
    if "rl" not in res or "grpo_delta" not in res["rl"]:
        return absent("rl")
    r = res["rl"]
    steps = r["grpo_train_steps"]
    gen = r["grpo_train_generate_fraction"]
    shorter = 1 - r["grpo_mean_tokens_rl"] / r["grpo_mean_tokens_base"]
    return "\n".join(
        [
            f"- RL − base pass@1: **{_delta(r, 'grpo')}** (paired over {r['grpo_problems']}"
            f" problems, {r['eval_samples_per_problem']} samples each); {claim_line(r, 'grpo')}.",
            f"- Completions {pct(shorter, 0)} shorter; policy entropy"
            f" {_first_last(r, 'grpo_train_entropy', 2)} nats per token (first → last steps).",
            f"- Wall time: {f(r['grpo_rl_seconds'], 0)} s for the {r['grpo_rl_steps']} steps"
            f" ({f(r['grpo_train_seconds'] / steps, 0)} s a step: {pct(gen, 0)} generation on"
            f" vLLM, {pct(1 - gen, 0)} the update on {r['prompts_per_step'] * r['group_size']}"
            " sequences);"
            f" {got(r, 'base_rollout_s', lambda s: f(s, 0) + ' s')} for the base eval rollout.",
            f"- Training batches' accuracy (first → last steps):"
            f" {_first_last(r, 'grpo_train_accuracy')}.",
        ]
    )


def rl_step_table(res: Results) -> str:
    """One RL update, this tree against an earlier commit, per dtype run (bench/rl_step.py)."""
    runs = [n for n in ("rl_step", "rl_step_fp32") if n in res]
    if not runs:
        return absent("rl_step")
    rows = []
    for name in runs:
        r = res[name]
        rows.append([
            f"`{name}.json`", r["dtype"], f"`{r['before_commit']}`",
            f"{f(r['before_step_s_median'], 2)} s", f"`{r['git_commit'][:7]}`",
            f"{f(r['after_step_s_median'], 2)} s", f"{f(r['speedup_median'], 2)}×",
            f"{f(r['before_first_loss'], 4)} / {f(r['after_first_loss'], 4)}",
            f"{f(r['before_first_grad_norm'], 4)} / {f(r['after_first_grad_norm'], 4)}",
        ])  # fmt: skip
    header = ["run", "dtype", "before", "update", "after", "update", "speed-up",
              "first loss (before / after)", "first grad norm (before / after)"]  # fmt: skip
    r = res[runs[0]]
    return (
        f"One update on {r['batch_sequences']} sequences ({r['batch_tokens']} tokens), median"
        " over every timed repeat of both processes of each tree.\n\n" + table(header, rows)
    )


def rl_memory_table(res: Results) -> str:
    """The RL stage's RSS over a long run: padded to the longest sequence only (when the file
    has that run), as shipped, and with glibc's mmap threshold pinned (bench/rl_memory.py)."""
    if "rl_memory" not in res:
        return absent("rl_memory")
    r = res["rl_memory"]
    multiple = r.get("pad_to_multiple_of")
    labels = {
        "unpadded": "batches padded to their longest sequence (`rl.optim.pad_to_multiple_of: 1`)",
        "shipped": "as shipped" + (f" (widths a multiple of {multiple})" if multiple else ""),
        "mmap_threshold": f"as shipped, `{r['mmap_threshold_env']}`",
    }
    runs = [n for n in labels if f"{n}_steps" in r]
    at = ("first", "tenth", "middle", "last", "max")
    rows = [[labels[n]] + [f(r[f"{n}_rss_gib_{k}"], 2) for k in at]
            + [f(r[f"{n}_step_seconds_sum"], 0), f(r[f"{n}_step_seconds_median"], 2)]
            for n in runs]  # fmt: skip
    header = ["run", "RSS GiB, first step", "a tenth in", "middle", "last", "max",
              "step seconds, sum", "median"]  # fmt: skip
    means = [f(r[f"{n}_length_mean"], 1) for n in runs]
    lengths = ", ".join(means[:-1]) + f" and {means[-1]}" if len(means) > 1 else means[0]
    out = [
        f"{r['rl_steps']} RL steps of the shipped params (`rl.steps` raised), same seed in every"
        f" run (mean completion length {lengths} tokens).",
        "",
        table(header, rows),
        "",
    ]
    if "unpadded" in runs:
        rise = {n: f(r[f"{n}_rss_gib_rise_after_tenth"], 2) for n in runs}
        out.append(
            f"- Rise from a tenth in to the last step: {rise['unpadded']} GiB padded to the"
            f" longest, {rise['shipped']} GiB as shipped; the last step's RSS as shipped is"
            f" {f(r['shipped_rss_ratio_last_vs_unpadded'], 2)}× the unpadded run's, at"
            f" {f(r['shipped_step_seconds_ratio_vs_unpadded'], 2)}× its step seconds."
        )
    out.append(
        f"- Pinned threshold against shipped: {f(r['mmap_threshold_rss_ratio_last'], 2)}× the"
        f" last step's RSS at {f(r['mmap_threshold_step_seconds_ratio'], 2)}× the step seconds."
    )
    return "\n".join(out)


def _seed_of(r: dict, name: str) -> str:
    """The `seed=` value of a seed variant's spec ("seed=3,optim.pad_to_multiple_of=1" -> "3")."""
    return r[f"{name}_spec"].split(",")[0].removeprefix("seed=")


def _seeds_line(r: dict, runs: str) -> str:
    return (
        f"{runs}: RL − base **{sf(r['seeds_delta_mean'])}"
        f" {ci(r['seeds_delta_ci95_lo'], r['seeds_delta_ci95_hi'], signed=True)}**"
        f" (sd {f(r['seeds_delta_sd'])} between runs; {r['seeds_ci_method']}):"
        f" **{r['seeds_verdict']}**; runs that show the gain on their own interval:"
        f" {r['seeds_shown_alone']} of {r['seeds']}."
    )


def rl_seeds_table(res: Results) -> str:
    """One RL recipe run under several seeds (bench/rl.py, seed-only variants): each run's
    paired difference, then the recipe's across the runs; beside them, where recorded, the
    same seeds with batches padded to their longest sequence only (rl_seeds_unpadded.json)."""
    if "rl_seeds" not in res:
        return absent("rl_seeds")
    r = res["rl_seeds"]
    if "seeds" not in r:
        return "*No across-seed summary in `bench/results/rl_seeds.json` (`--summarise`).*"
    names = r["seeds_names"].split(",")
    u = res.get("rl_seeds_unpadded", {})
    other = {_seed_of(u, n): n for n in u.get("seeds_names", "").split(",") if n}
    first = names[0]
    header = [
        "RL seed",
        f"eval pass@1 (base {f(r[f'{first}_pass_at_1_base'])})",
        "RL − base [95% CI]",
        "verdict",
        f"eval tokens (base {f(r[f'{first}_mean_tokens_base'], 1)})",
        "train length, first → last",
        "RL seconds",
    ]
    if other:
        header.append("RL − base, padded to the longest only")
    rows = []
    for n in names:
        row = [
            _seed_of(r, n),
            f(r[f"{n}_pass_at_1_rl"]),
            _delta(r, n),
            r[f"{n}_verdict"],
            f(r[f"{n}_mean_tokens_rl"], 1),
            f"{f(r[f'{n}_train_length_first'], 1)} → {f(r[f'{n}_train_length_last'], 1)}",
            f(r[f"{n}_rl_seconds"], 0),
        ]
        if other:
            v = other.get(_seed_of(r, n))
            row.append(f"{_delta(u, v)} ({u[f'{v}_verdict']})" if v else "not run")
        rows.append(row)
    setup = (
        f"{r['rl_steps']} GRPO steps of {r['prompts_per_step']} prompts × {r['group_size']},"
        f" {r['n_train']} train and {r['n_eval']} eval problems ({r['kinds']}),"
        f" {r['eval_samples_per_problem']} eval samples per problem: the shipped recipe."
    )
    shipped = f"Across the {r['seeds']} runs as shipped"
    lines = [setup, "", table(header, rows), "", "- " + _seeds_line(r, shipped)]
    if "seeds" in u:
        unpadded = (
            "The same seeds padded to the longest only"
            " (`rl.optim.pad_to_multiple_of: 1`, `rl_seeds_unpadded.json`)"
        )
        lines.append("- " + _seeds_line(u, unpadded))
    return "\n".join(lines)


CREDITS = ("sum", "clip", "min_form", "delta")


def _credit_variants(r: dict) -> dict[str, str]:
    """credit -> variant name, from each variant's recorded credit or its spec."""
    out = {}
    for key, spec in r.items():
        if key.endswith("_spec"):
            v = key[: -len("_spec")]
            m = re.search(r"credit=(\w+)", spec)
            out[r.get(f"{v}_credit") or (m.group(1) if m else "default")] = v
    return out


def _rl_prm(res: Results) -> tuple[dict, dict[str, str]] | str:
    """rl_prm.json and its variants by credit rule, or the text that says why there are none."""
    if "rl_prm" not in res:
        return absent("rl_prm")
    r = res["rl_prm"]
    variants = _credit_variants(r)
    return (r, variants) if variants else "*No variant in `bench/results/rl_prm.json`.*"


def rl_prm_table(res: Results) -> str:
    got = _rl_prm(res)
    if isinstance(got, str):
        return got
    r, variants = got
    first = next(iter(variants.values()))
    header = [
        "credit",
        f"eval pass@1 (base {f(r[f'{first}_pass_at_1_base'])})",
        "RL − base [95% CI]",
        "verdict",
        f"eval tokens (base {f(r[f'{first}_mean_tokens_base'], 1)})",
        "steps per solution",
        "PRM step score",
        "training-batch accuracy",
    ]
    rows = []
    for credit in [*CREDITS, *(c for c in variants if c not in CREDITS)]:
        v = variants.get(credit)
        if v is None:
            rows.append([f"`{credit}`", "not run", "", "", "", "", "", ""])
            continue
        t = f"{v}_train"
        rows.append(
            [
                f"`{credit}`"
                + (
                    f" (η {r[f'{v}_clip_eta']})"
                    if credit == "clip" and r.get(f"{v}_clip_eta") is not None
                    else ""
                ),
                f(r[f"{v}_pass_at_1_rl"]),
                _delta(r, v),
                r.get(f"{v}_verdict", "not recorded"),
                f(r[f"{v}_mean_tokens_rl"], 1),
                _first_last(r, f"{t}_steps_per_solution", 2),
                _first_last(r, f"{t}_prm_step_score"),
                _first_last(r, f"{t}_accuracy"),
            ]
        )
    return table(header, rows)


def rl_prm_notes(res: Results) -> str:
    got = _rl_prm(res)
    if isinstance(got, str):
        return got
    r, variants = got
    out = [f'- Verdicts are on "{r[f"{next(iter(variants.values()))}_claim"]}".']
    order = [*(c for c in CREDITS if c in variants), *(c for c in variants if c not in CREDITS)]
    for credit in order:
        v = variants[credit]
        t = f"{v}_train"
        curves = (("steps_per_solution", "steps per solution"), ("prm_step_score", "PRM score"))
        missing = [label for key, label in curves if f"{t}_{key}_first" not in r]
        out.append(
            f"- `{credit}`: training completions {_first_last(r, f'{t}_length', 1)} tokens (limit"
            f" {r['max_new_tokens']}), eval mean {f(r[f'{v}_mean_tokens_rl'], 1)};"
            f" {f(r[f'{v}_rl_seconds'], 0)} s for {r[f'{v}_rl_steps']} steps"
            + (
                f"; {' and '.join(missing)} not recorded (the run predates those curves)"
                if missing
                else ""
            )
            + "."
        )
    not_run = [f"`{c}`" for c in CREDITS if c not in variants]
    if not_run:
        out.append(f"- Not run in this results file: {', '.join(not_run)}.")
    return "\n".join(out)


# ---- the regions ---------------------------------------------------------------
# ---- validity ---------------------------------------------------------------------------------
VERIFIERS = {
    "orm": "ORM (Bradley-Terry, MC-labelled pairs)",
    "prm_mc": "PRM on MC labels",
    "prm_omegaprm": "PRM on OmegaPRM labels",
    "prm_implicit": "implicit PRM (outcome labels only)",
}


def _validity_ids(r: dict) -> list[str]:
    """Claims a and b in the order of the issue: self-consistency, then each verifier."""
    ids = [k[len("claim_") : -len("_verdict")] for k in r
           if k.startswith("claim_") and k.endswith("_verdict") and f"{k[:-8]}_estimate" in r
           and not k.startswith(("claim_c_", "claim_d_"))]  # fmt: skip
    order = ["majority"] + list(VERIFIERS)
    return sorted(ids, key=lambda i: [n for n, v in enumerate(order) if i.startswith(v)] or [9])


def _validity_label(r: dict, i: str) -> str:
    """'claim a/b: <verifier> best-of-N beats majority', from the stored claim text."""
    text = r[f"claim_{i}_claim"]
    name = next((v for k, v in VERIFIERS.items() if i.startswith(f"{k}_")), None)
    if name:  # the eval names its one ORM and one PRM; here there are three PRMs
        text = re.sub(r"^(ORM|PRM)", name, text)
    return ("a. " if i.startswith("majority") else "b. ") + text


CLAIM_C = "validity_claim_c"  # bench/validity.py --claim-c-only, beside validity_avx2's a and b


def _claim_c_source(res: Results, r: dict, claim_c: str | None) -> dict:
    """Where claim c comes from: the `claim_c` run (`--claim-c-only`) when named and present,
    else the run itself."""
    return res[claim_c] if claim_c and claim_c in res else r


def validity_setup(res: Results, name: str = "validity", claim_c: str | None = None) -> str:
    if name not in res:
        return absent(name)
    r = res[name]
    rc = _claim_c_source(res, r, claim_c)
    seconds = sum(v for k, v in r.items() if k.endswith("_s") and isinstance(v, (int, float)))
    return (
        f"Policy `{r['policy']}` (GGUF, SHA-256 pinned in `bench/models.py`), answers of at most "
        f"{r['max_new_tokens']} tokens; verifiers trained on `{r['verifier_base']}` (smaller "
        f"than the policy). GSM8K train: {r['n_train']} problems × 4 rollouts for labels "
        f"(each label set under {r['label_budget_tokens']:,} generated tokens) and verifier "
        f"training; GSM8K test: {r['n_eval']} problems × {r['samples']} samples for the "
        f"selection claims; {rc['pb_items']} ProcessBench GSM8K solutions (half erroneous) for "
        f"label quality, completions of at most {rc['pb_max_new_tokens']} tokens. Base policy "
        f"pass@1 on the test problems: {got(r, 'policy_pass@1', f)}. The rwpipe commands took "
        f"{minutes(seconds)} in all (per command in the results file)."
    )


def validity_table(res: Results, name: str = "validity", claim_c: str | None = None) -> str:
    """Claims a-d of one validity run; claim c from the `claim_c` run when it is named (a
    `--claim-c-only` run beside a main run that had no room for it)."""
    if name not in res:
        return absent(name)
    r = res[name]
    ids = _validity_ids(r)
    rows, methods = claims_rows(r, "claim_", ids, {i: _validity_label(r, i) for i in ids})
    rc = _claim_c_source(res, r, claim_c)
    for m, name in (("mc", "MC (Math-Shepherd)"), ("omegaprm", "OmegaPRM")):
        c = f"claim_c_{m}_minus_outcome_rule"
        if f"{c}_estimate" not in rc:
            continue
        k = f"claim_c_{m}"
        f1 = f"{f(rc[f'{k}_f1'])} {ci(rc[f'{k}_f1_ci95_lo'], rc[f'{k}_f1_ci95_hi'])}"
        tokens = f(rc[f"{k}_tokens_per_label"], 0)
        rows.append([
            f"c. {name} first-error labels from the policy beat the outcome rule on "
            f"ProcessBench (F1 {f1}; {tokens} tokens per label)",
            f"{sf(rc[f'{c}_estimate'])} {ci(rc[f'{c}_ci95_lo'], rc[f'{c}_ci95_hi'], signed=True)}",
            f"{rc[f'{c}_n']} solutions", f"**{rc[f'{c}_verdict']}**",
        ])  # fmt: skip
        methods.append(rc[f"{c}_ci_method"])
    for credit, name in (("sum", "`sum`"), ("clip", "`clip`"), ("min", "`min_form`"),
                         ("delta", "`delta`"), ("verifiable", "")):  # fmt: skip
        c = f"claim_d_{credit}"
        if f"{c}_verdict" not in r:
            continue
        est, lo, hi = r[f"{c}_estimate"], r[f"{c}_ci95_lo"], r[f"{c}_ci95_hi"]
        length = " → ".join(f(r[f"{c}_length_{w}"], 1) for w in ("first", "last"))
        signature = f"length {length} tokens"
        if r.get(f"{c}_steps_per_solution_first") is not None:
            steps = " → ".join(f(r[f"{c}_steps_per_solution_{w}"], 2) for w in ("first", "last"))
            signature = f"steps per solution {steps}, {signature}"
        what = f"the PRM alone with credit {name}" if name else "the verifiable reward"
        rows.append([
            f"d. RL on {what} raises pass@1 ({signature})",
            f"{sf(est)} {ci(lo, hi, signed=True)}", f"{r[f'{c}_n']} problems",
            f"**{r[f'{c}_verdict']}**",
        ])  # fmt: skip
        methods.append(r.get(f"{c}_ci_method") or "")
    if not rows:
        return "*No claim finished in this results file.*"
    out = table(["claim", "estimate [95% CI]", "n", "verdict"], rows)
    methods = sorted({m for m in methods if m})
    out += "\n\n95% CI: " + "; ".join(methods) + "."
    if rc is not r:
        out += (f"\n\nc: from `bench/results/{claim_c}.json`, its own run of `--claim-c-only` "
                f"on {rc['pb_items']} solutions (its machine line above).")  # fmt: skip
    return out + f"\n\nd: {r['claim_d']}."


# ---- PRM kinds --------------------------------------------------------------------------------
PRM_KINDS = {
    "discriminative": "discriminative (token head, step BCE)",
    "implicit": "implicit (log-ratio, outcome labels only)",
    "generative": "generative (critique SFT, P(correct) at each verdict)",
}


def _interval_cell(r: dict, key: str, lo: str = "_lo", hi: str = "_hi") -> str:
    if r.get(key) is None:
        return "not recorded"
    return f"{f(r[key])} {ci(r[key + lo], r[key + hi])}"


def prm_kinds_table(res: Results) -> str:
    if "prm_kinds" not in res:
        return absent("prm_kinds")
    r = res["prm_kinds"]
    names = [n for n in PRM_KINDS if f"{n}_eval_s" in r]
    names += sorted(k[: -len("_eval_s")] for k in r if k.startswith("generative_vote")
                    and k.endswith("_eval_s"))  # fmt: skip
    rows = []
    for n in names:
        label = PRM_KINDS.get(n) or f"generative, vote of {r['votes']} sampled critiques"
        base = n if n in PRM_KINDS else "generative"
        tokens = r.get(f"{n}_scoring_generated_tokens")
        rows.append([
            label,
            _interval_cell(r, f"{n}_pb_f1"),
            _interval_cell(r, f"{n}_prmbench_prmscore"),
            _interval_cell(r, f"{base}_train_step_auc", "_ci95_lo", "_ci95_hi"),
            got(r, f"{base}_train_s", lambda x: f(x, 0)) if n in PRM_KINDS else "(same model)",
            f(r[f"{n}_eval_s"], 0),
            f"{tokens:,}" if tokens is not None else "none",
        ])  # fmt: skip
    header = ["PRM (same labels)", f"ProcessBench GSM8K F1 ({r['pb_items']} items)",
              "PRMBench PRMScore", "held-out step AUC", "train s", "eval s",
              "critique tokens sampled"]  # fmt: skip
    notes = []
    for n in names:
        if f"{n}_scoring_unparsed_solutions" in r:
            label = PRM_KINDS.get(n) or f"The vote of {r['votes']} sampled critiques"
            notes.append(
                f"- {label}: no sampled critique parsed for"
                f" {r[f'{n}_scoring_unparsed_solutions']:,} of {r[f'{n}_scoring_solutions']:,}"
                " scored solutions (those get no step scores)."
            )
    return table(header, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def search_setup(res: Results) -> str:
    """The stronger-policy search bench's sizes and stage times (`bench/search.py`)."""
    if "search" not in res:
        return absent("search")
    r = res["search"]
    times = ", ".join(f"{name} {r[f'{key}_s']:.0f} s" for key, name in (
        ("model_policy", "model"), ("rollout_train", "train rollouts"),
        ("rollout_eval", "eval rollouts"), ("annotate_mc", "MC labels"),
        ("train_prm", "PRM training"), ("search", "search")) if f"{key}_s" in r)  # fmt: skip
    return (
        f"Policy `{r['policy']}`; PRM: discriminative on `{r['verifier_base']}`, trained on"
        f" `{r['prm_labels']}` labels of the policy's {r['labels_rollouts']} rollouts on"
        f" {r['n_train']} GSM8K train problems (label budget {r['label_budget_tokens']:,}"
        f" tokens: {r['labels_step_labelled']} incorrect rollouts step-labelled,"
        f" {r['labels_inferred_correct']} correct ones labelled all-correct without sampling,"
        f" {r['labels_outcome_only']} with their outcome only): {r['prm_train_items']} training"
        f" solutions, held-out step AUC {f(r['prm_heldout_step_auc'])}"
        f" {ci(r['prm_heldout_step_auc_ci95_lo'], r['prm_heldout_step_auc_ci95_hi'])} on"
        f" {r['prm_heldout_heldout_solutions']} solutions of held-out train problems; searched:"
        f" {r['search_problems']} GSM8K test problems, {r['max_new_tokens']} new tokens per"
        f" solution at most. Stage times: {times}."
    )


REGIONS: dict[str, Callable[[Results], str]] = {
    "rollout_profile_run": run_region("rollout_profile"),
    "rollout_profile_table": rollout_profile_table,
    "pipeline_run": run_region("pipeline"),
    "pipeline_table": lambda res: pipeline_table(
        res, "pipeline", ("pipeline_avx2_5ad5ad0", "pipeline_before")
    ),
    "pipeline_findings": pipeline_findings,
    "pipeline_claims": pipeline_claims,
    "pipeline.install_minutes": pipeline_install_minutes,
    "pipeline_avx512_run": run_region("pipeline_avx512"),
    "pipeline_avx512_table": lambda res: pipeline_table(
        res, "pipeline_avx512", ("pipeline_avx512_before",)
    ),
    "pipeline_avx512_claims": lambda res: pipeline_claims(res, "pipeline_avx512"),
    "pipeline_avx512_noamx_run": run_region("pipeline_avx512_noamx"),
    "pipeline_avx512_noamx_table": lambda res: pipeline_table(
        res, "pipeline_avx512_noamx", ("pipeline_avx512_noamx_aa69be9",)
    ),
    "pipeline_avx512_noamx_claims": lambda res: pipeline_claims(res, "pipeline_avx512_noamx"),
    "pipeline_avx512_fp32_run": run_region("pipeline_avx512_fp32_5d4d6aa"),
    "pipeline_avx512_bf16_run": run_region("pipeline_avx512_bf16_5d4d6aa"),
    "pipeline_dtype": pipeline_dtype,
    "pipeline_avx512.summary": pipeline_avx512_summary,
    "suite_run": run_region("suite"),
    "suite": suite,
    "suite_before_after": suite_before_after,
    "suite.minutes": suite_minutes,
    "suite_avx512_run": run_region("suite_avx512"),
    "suite_avx512": lambda res: suite(res, "suite_avx512"),
    "suite_avx512_noamx_run": run_region("suite_avx512_noamx"),
    "suite_avx512_noamx": lambda res: suite(res, "suite_avx512_noamx"),
    "suite_avx512_noamx.minutes": lambda res: suite_minutes(res, "suite_avx512_noamx"),
    "suite_avx512_xdist_run": run_region("suite_avx512_xdist"),
    "suite_avx512_xdist": suite_parallel,
    "pipeline_search": search_budget,
    "pipeline_avx512_search": lambda res: search_budget(res, "pipeline_avx512"),
    "search_run": run_region("search"),
    "search_setup": search_setup,
    "search_table": lambda res: search_budget(res, "search"),
    "pipeline.dvc_repro_minutes": pipeline_dvc_repro_minutes,
    "pipeline.commit": pipeline_commit,
    "pipeline.make_test_minutes": pipeline_make_test_minutes,
    "pipeline.majority": pipeline_majority,
    "rl.grpo_delta": rl_grpo_delta,
    "rl_seeds.summary": rl_seeds_summary,
    "pipeline.machine": pipeline_machine,
    **rollout_regions("rollout"),
    "rollout.bf16_slowdown": rollout_bf16_slowdown,
    "rollout.cpu_capability": rollout_cpu_capability,
    **rollout_regions("rollout_avx512"),
    **rollout_regions("rollout_avx512_noamx"),
    "annotate_run": run_region("annotate"),
    "annotate_cost": annotate_cost,
    "annotate_cache": annotate_cache,
    "annotate_processbench": annotate_processbench,
    "train_run": run_region("train"),
    "train_table": train_table,
    "judge_probe_run": run_region("judge_probe"),
    "judge_probe_table": judge_probe_table,
    "judge_probe_notes": judge_probe_notes,
    "judge_probe.boxed_abstained": judge_probe_boxed_abstained,
    "rl_run": run_region("rl"),
    "rl_table": rl_table,
    "rl_notes": rl_notes,
    "rl_step_run": run_region("rl_step"),
    "rl_step_table": rl_step_table,
    "rl_memory_run": run_region("rl_memory"),
    "rl_seeds_run": run_region("rl_seeds"),
    "rl_seeds_unpadded_run": run_region("rl_seeds_unpadded"),
    "rl_seeds_table": rl_seeds_table,
    "rl_memory_table": rl_memory_table,
    "rl_prm_run": run_region("rl_prm"),
    "rl_prm_table": rl_prm_table,
    "rl_prm_notes": rl_prm_notes,
    "validity_run": run_region("validity"),
    "validity_setup": validity_setup,
    "validity_table": validity_table,
    "validity_avx2_run": run_region("validity_avx2"),
    "validity_claim_c_run": run_region(CLAIM_C),
    "validity_avx2_setup": lambda res: validity_setup(res, "validity_avx2", CLAIM_C),
    "validity_avx2_table": lambda res: validity_table(res, "validity_avx2", CLAIM_C),
    "prm_kinds_run": run_region("prm_kinds"),
    "prm_kinds_table": prm_kinds_table,
}
