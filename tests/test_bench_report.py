"""bench/report.py: BENCHMARKS.md and README.md's measured figures are what bench/results holds,
and every bench records its machine through bench/machine.py.

    .venv/bin/python -m pytest tests/test_bench_report.py
"""

import importlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"


@pytest.fixture(scope="module")
def bench():
    """bench/machine.py, report.py, report_sections.py and pipeline.py, imported as the scripts
    import each other (bench/ on the path)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield {
            name: importlib.import_module(name)
            for name in (
                "machine",
                "report",
                "report_sections",
                "pipeline",
                "rollout_profile",
                "rl",
            )
        }
    finally:
        sys.path.remove(str(BENCH))


def _report(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--root", str(root), *args],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def copy(tmp_path) -> Path:
    """The two documents and the results files, in a scratch root."""
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for doc in ("BENCHMARKS.md", "README.md"):
        shutil.copy(ROOT / doc, tmp_path / doc)
    for path in RESULTS.glob("*.json"):
        shutil.copy(path, tmp_path / "bench" / "results" / path.name)
    return tmp_path


def _edit(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2) + "\n")


def test_committed_docs_match_the_results():
    result = _report(ROOT, "--check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_changed_result_fails_the_check_with_a_diff_and_regenerates(copy):
    _edit(copy / "bench/results/rl.json", lambda r: r | {"grpo_pass_at_1_rl": 0.4123})
    result = _report(copy, "--check")
    assert result.returncode == 1
    assert "-| eval pass@1 | 0.227 | **0.367** |" in result.stdout
    assert "+| eval pass@1 | 0.227 | **0.412** |" in result.stdout
    assert _report(copy).returncode == 0  # writes
    assert "| eval pass@1 | 0.227 | **0.412** |" in (copy / "BENCHMARKS.md").read_text()
    assert _report(copy, "--check").returncode == 0


def test_readme_inline_figures_follow_the_results(copy):
    _edit(copy / "bench/results/pipeline.json", lambda r: r | {"dvc_repro_s": 1500.0})
    assert _report(copy, "--check").returncode == 1
    _report(copy)
    readme = (copy / "README.md").read_text()
    assert "<!-- bench:pipeline.dvc_repro_minutes -->25.0<!-- /bench -->" in readme
    assert (
        "Target `dvc repro` ≤ 30 minutes: met (25.0 minutes)"
        in (copy / "BENCHMARKS.md").read_text()
    )


@pytest.mark.parametrize(
    ("added", "message"),
    [
        ("Today vLLM ran at 123.3 tokens/s.", "figure '123.3' outside a region"),
        ("It was 1.25× faster.", "figure '1.25×' outside a region"),
        ("Trained on 8911 real tokens.", "integer 8911 (a results value)"),
        ("| `min_form` | MINFORM_ROW |", "placeholder 'MINFORM_ROW'"),
    ],
)
def test_hand_typed_figures_and_placeholders_fail(copy, added, message):
    doc = copy / "BENCHMARKS.md"
    doc.write_text(doc.read_text() + f"\n{added}\n")
    result = _report(copy, "--check")
    assert result.returncode == 1
    assert message in result.stderr


def test_an_inline_region_may_not_start_a_line(copy):
    doc = copy / "README.md"
    text = doc.read_text().replace(
        "abstains\non <!-- bench:judge_probe", "abstains on\n<!-- bench:judge_probe"
    )
    assert text != doc.read_text()
    doc.write_text(text)
    result = _report(copy, "--check")
    assert result.returncode == 1
    assert "inline region 'judge_probe.boxed_abstained' starts a line" in result.stderr


def test_a_stored_verdict_must_match_its_interval(copy, bench):
    path = copy / "bench/results/rl_prm.json"
    r = json.loads(path.read_text())
    truth = bench["machine"].verdict(r["prm_clip_delta_ci95_lo"], r["prm_clip_delta_ci95_hi"])
    wrong = next(v for v in ("shown", "contradicted") if v != truth)
    _edit(path, lambda r: r | {"prm_clip_verdict": wrong})
    result = _report(copy, "--check")
    assert result.returncode == 1
    assert f"prm_clip_verdict is '{wrong}', its interval gives '{truth}'" in result.stderr


def test_verdict_reads_the_interval(bench):
    verdict = bench["machine"].verdict
    assert verdict(0.056, 0.225) == "shown"
    assert verdict(-0.186, -0.048) == "contradicted"
    assert verdict(-0.140, 0.015) == "not shown at this size"
    assert verdict(0.0, 0.2) == "not shown at this size"  # an interval touching 0 covers it


def test_credits_not_in_the_results_are_rows_that_say_not_run(bench):
    sections = bench["report_sections"]
    res = bench["report"].load(RESULTS)
    full = res["rl_prm"]
    # a file without the min_form and delta variants, whose sum run predates two curves
    old = {k: v for k, v in full.items() if not k.startswith(("prm_min_", "prm_delta_"))}
    curves = ("prm_sum_train_steps_per_solution", "prm_sum_train_prm_step_score")
    old = {k: v for k, v in old.items() if not k.startswith(curves)}
    rows = sections.rl_prm_table(res | {"rl_prm": old}).splitlines()
    assert "| `min_form` | not run |" in "\n".join(rows)
    assert "| `delta` | not run |" in "\n".join(rows)
    (sum_row,) = [row for row in rows if row.startswith("| `sum`")]
    assert sum_row.count("not recorded") == 2
    dropped = res | {"rl_prm": {k: v for k, v in full.items() if "clip" not in k}}
    assert "| `clip` | not run |" in sections.rl_prm_table(dropped)
    assert "*Not run: `bench/results/rl_prm.json` is absent.*" in sections.rl_prm_table(
        {k: v for k, v in res.items() if k != "rl_prm"}
    )


def test_results_without_machine_facts_are_marked_as_such(bench):
    sections = bench["report_sections"]
    res = bench["report"].load(RESULTS)
    for name, r in res.items():
        line = sections.machine_line(r)
        if "machine_facts_version" in r:  # written through bench/machine.py
            assert "recorded before" not in line and r["cpu_capability"] in line
        else:  # recorded before bench/machine.py: marked, and what the file keeps is shown
            assert "recorded before machine facts were kept" in line, name
    old = {"tokens_per_s": 1.0, "cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX2"}
    line = sections.machine_line(old)
    assert "recorded before machine facts were kept" in line
    assert "AMD EPYC, 2 cores, AVX2" in line


def test_write_results_records_the_machine(bench, tmp_path):
    machine = bench["machine"]
    started = machine.start("none")
    path = tmp_path / "x.json"
    machine.write_results(path, {"tokens_per_s": 12.5}, started)
    got = json.loads(path.read_text())
    flags = next(
        set(line.split(":", 1)[1].split())
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("flags")
    )
    import torch

    assert got["tokens_per_s"] == 12.5
    assert got["machine_facts_version"] == machine.FACTS_VERSION
    assert got["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert got["cpu_avx512_bf16"] == ("avx512_bf16" in flags)
    assert got["cpu_amx_bf16"] == ("amx_bf16" in flags)
    assert got["torch_threads"] == torch.get_num_threads()
    assert got["version_torch"] == importlib.metadata.version("torch")
    assert got["version_transformers"] == importlib.metadata.version("transformers")
    assert re.fullmatch(r"[0-9a-f]{40}", got["git_commit"])
    assert isinstance(got["load_avg_1min_start"], float)
    assert isinstance(got["load_avg_1min_end"], float)
    assert got["other_work"] == "none"
    assert not any(k.startswith("_") for k in got)
    line = bench["report_sections"].machine_line(got)
    assert got["cpu_capability"] in line and f"torch {got['version_torch']}" in line
    assert "recorded before" not in line


def test_every_bench_script_writes_its_results_through_machine():
    helpers = ("machine", "report", "models")  # machine facts, doc generation, model fetching
    scripts = [p for p in BENCH.glob("*.py") if p.stem not in helpers]
    scripts = [p for p in scripts if not p.stem.startswith("report_")]
    assert {p.stem for p in scripts} >= {"annotate", "judge_probe", "pipeline", "rl", "rollout"}
    for path in scripts:
        source = path.read_text()
        assert "machine.write_results(" in source, path.name
        assert "machine.add_arguments(" in source, path.name
        assert "machine.start(" in source, path.name
        assert not re.search(r"\.write_text\(json\.dumps", source), path.name


def test_rollout_profile_sorts_torch_kernels_by_what_they_do(bench):
    import cProfile
    import pstats

    import torch

    x, w = torch.randn(64, 32), torch.randn(48, 32)

    def step():
        logits = torch.nn.functional.linear(x, w)
        logits.log_softmax(-1).to(torch.float64)
        sorted(range(10**5), reverse=True)  # a Python built-in: the engine's time, not a kernel

    profile = cProfile.Profile()
    profile.runcall(step)
    got = bench["rollout_profile"].categorise(pstats.Stats(profile))
    assert got["matmul"][1] == 1 and got["sampling"][1] == 1 and got["attention"] == (0.0, 0)
    assert got["other_ops"][1] == 1  # the cast
    # `sorted` is left to the engine: the categories hold the three torch calls and their time only
    assert sum(calls for _, calls in got.values()) == 3
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    torch_s = sum(v[2] for (file, _, name), v in stats.items() if file == "~" and "torch" in name)
    assert sum(secs for secs, _ in got.values()) == pytest.approx(torch_s)


def test_rl_seed_summary_is_a_t_interval_over_the_seed_only_runs(bench):
    runs = {"s0": (0.10, "shown"), "s1": (0.02, "not shown at this size"), "s2": (0.06, "shown")}
    r = {f"{n}_{k}": v for n, (d, verdict) in runs.items()
         for k, v in (("spec", f"seed={n[1]}"), ("delta", d), ("verdict", verdict))}  # fmt: skip
    r |= {"prm_spec": "rewards.prm=1", "prm_delta": 0.9, "prm_verdict": "shown"}  # not a seed
    got = bench["rl"].seed_summary(r)
    assert got["seeds"] == 3 and got["seeds_names"] == "s0,s1,s2" and got["seeds_shown_alone"] == 2
    assert got["seeds_delta_mean"] == pytest.approx(0.06) and got["seeds_delta_sd"] == 0.04
    half = 4.303 * 0.04 / 3**0.5  # t(0.975, df 2) x sd / sqrt(k)
    assert got["seeds_delta_ci95_lo"] == pytest.approx(0.06 - half, abs=1e-4)
    assert got["seeds_verdict"] == "not shown at this size"  # lo < 0 < hi
    assert bench["rl"].seed_summary({"s0_spec": "seed=0", "s0_delta": 0.1}) == {}


def test_pipeline_reads_make_tests_summary_and_flattens_metrics(bench):
    pipeline = bench["pipeline"]
    summary = "= 393 passed, 3 skipped, 1 xfailed, 2 errors in 2081.12s (0:34:41) ="
    lines = [(1.0, "tests/test_x.py ...."), (2.0, summary), (2.1, "make: *** [test] Error 1")]
    assert pipeline.pytest_counts(lines) == {
        "make_test_passed": 393,
        "make_test_skipped": 3,
        "make_test_xfailed": 1,
        "make_test_error": 2,
        "make_test_pytest_s": 2081.12,
    }
    metrics = {"policy": {"pass@4": 0.40625, "problems": 32}, "curves": [1, 2], "ok": True}
    assert pipeline.flatten(metrics, "eval") == {
        "eval_policy_pass_at_4": 0.4062,
        "eval_policy_problems": 32,
        "eval_ok": True,
    }


def _claim(i: str, text: str, est: float, verdict: str) -> dict:
    keys = {"claim": text, "estimate": est, "ci95_lo": est - 0.1, "ci95_hi": est + 0.1, "n": 32,
            "unit": "problems", "verdict": verdict, "ci_method": "normal"}  # fmt: skip
    return {f"claim_{i}_{k}": v for k, v in keys.items()}


def test_validity_claims_in_the_issue_order_with_each_verifier_named(bench):
    sections = bench["report_sections"]
    r = {"claim_d": "not run here"}
    r |= _claim("prm_implicit_min_beats_majority", "PRM (min) best-of-8 beats majority", 0.0,
                "not shown at this size")  # fmt: skip
    r |= _claim("majority_beats_pass1", "majority vote at N=8 beats pass@1", 0.15, "shown")
    r |= _claim("orm_beats_majority", "ORM best-of-8 beats majority", -0.2, "contradicted")
    r |= {f"claim_c_mc_{k}": v for k, v in {
        "f1": 0.4, "f1_ci95_lo": 0.2, "f1_ci95_hi": 0.6, "tokens_per_label": 900.0,
        "minus_outcome_rule_estimate": 0.05, "minus_outcome_rule_ci95_lo": -0.1,
        "minus_outcome_rule_ci95_hi": 0.2, "minus_outcome_rule_n": 16,
        "minus_outcome_rule_verdict": "not shown at this size",
        "minus_outcome_rule_ci_method": "paired bootstrap"}.items()}  # fmt: skip
    rows = [x for x in sections.validity_table({"validity": r}).splitlines() if x.startswith("| ")]
    assert [x.split(" | ")[0] for x in rows[2:]] == [
        "| a. majority vote at N=8 beats pass@1",
        "| b. ORM (Bradley-Terry, MC-labelled pairs) best-of-8 beats majority",
        "| b. implicit PRM (outcome labels only) (min) best-of-8 beats majority",
        "| c. MC (Math-Shepherd) first-error labels from the policy beat the outcome rule on "
        "ProcessBench (F1 0.400 [0.200, 0.600]; 900 tokens per label)",
    ]
    assert rows[3].endswith("| −0.200 [−0.300, −0.100] | 32 problems | **contradicted** |")
    assert "*Not run: `bench/results/validity.json` is absent.*" == sections.validity_table({})
    # claim c's own run (--claim-c-only), where named, replaces the main run's and says so
    own = {k: v for k, v in r.items() if k.startswith("claim_c_")}
    own |= {"claim_c_mc_minus_outcome_rule_n": 100, "claim_c_mc_f1": 0.5, "pb_items": 100}
    res = {"validity": r, "validity_claim_c": own}
    text = sections.validity_table(res, "validity", "validity_claim_c")
    (c,) = [x for x in text.splitlines() if x.startswith("| c. ")]
    assert "F1 0.500" in c and "| 100 solutions |" in c
    assert "validity_claim_c.json" in text and "16 solutions" not in text
    # not named: the run's own claim c, whatever other file is present
    (c,) = [x for x in sections.validity_table(res).splitlines() if x.startswith("| c. ")]
    assert "F1 0.400" in c and "| 16 solutions |" in c


def test_suite_before_after_pairs_each_slow_test_with_its_earlier_time(bench):
    sections = bench["report_sections"]
    before = {"commit": "c16d054", "make_test_pytest_s": 2725.0}
    slow = {"1": ("t::a (call)", 500.0), "2": ("t::b (call)", 400.0)}
    for i, (test, s) in slow.items():
        before |= {f"make_test_slowest_{i}_test": test, f"make_test_slowest_{i}_s": s}
    after = {"suite_s": 1500.0, "git_commit": "abcdef0123"}
    after |= {"slowest_1_test": "t::a (call)", "slowest_1_s": 300.0,
              "slowest_2_test": "t::c (setup)", "slowest_2_s": 200.0}  # fmt: skip
    text = sections.suite_before_after({"suite": after, "pipeline": before})
    assert "2725 s at `c16d054` → 1500 s at `abcdef0`" in text and "**not met**" in text
    rows = [x for x in text.splitlines() if x.startswith("| 1 ") or x.startswith("| 2 ")]
    assert rows == ["| 1 | `t::a (call)` | 500.0 | 300.0 |",
                    "| 2 | `t::c (setup)` | not among the ten | 200.0 |"]  # fmt: skip
    assert "Out of the ten since: `t::b (call)` (400.0 s)." in text
    assert sections.suite_before_after({"pipeline": before}).startswith("*Not run")
