"""The pipeline under DVC, in a scratch copy of the repository: `dvc repro` builds the
artifacts, a second `dvc repro` does nothing, `dvc exp run -S` overrides a param.

    python -m pytest tests/test_pipeline.py -q
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rwpipe import artifacts, runtime
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

COPY = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "rwpipe",
    "stages",
    ".dvc/config",
    ".dvcignore",
]


def _sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git + DVC repository holding the pipeline's code, params and dvc.yaml."""
    root = tmp_path_factory.mktemp("repo")
    for name in COPY:
        src, dst = ROOT / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    # The shipped params at toy size: this checks the DVC wiring, not the models.
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # The kinds SmolLM2-135M solves most often, so the reward models see both outcomes.
    params["prepare"] |= {"n_train": 6, "n_eval": 2, "synthetic": {"kinds": ["mul", "add"]}}
    params["rollout"]["sampling"] |= {"n": 4, "max_new_tokens": 64}
    params["annotate"]["completion"] |= {"k": 2, "k_first": 1, "max_new_tokens": 32}
    for section in ("train_rm", "train_prm"):
        params[section]["optim"] |= {"epochs": 1, "batch_size": 4, "max_length": 256}
        params[section]["eval_fraction"] = 0.3
    params["rl"] |= {"steps": 2, "prompts_per_step": 2, "group_size": 2}
    params["rl"]["sampling"] |= {"max_new_tokens": 48}
    params["eval"]["search"] |= {"problems": 1, "max_steps": 2, "step_max_tokens": 24}
    params["search"] |= {"problems": 2, "max_steps": 2, "step_max_tokens": 24}
    params["eval"] |= {"processbench": "sample", "processbench_max": 3}  # of both shipped subsets
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(root, "git", "init", "-q")
    _sh(root, "git", "config", "user.email", "t@example.invalid")
    _sh(root, "git", "config", "user.name", "test")
    _sh(root, "dvc", "init", "-q", "-f")
    shutil.copy2(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "pipeline")
    return root


def params_methods() -> list[str]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["search"]["methods"]


def test_repro_builds_then_is_a_no_op(repo):
    out = _sh(repo, "dvc", "repro")
    model = repo / "data" / "models" / "smollm2-135m-instruct"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    problems = artifacts.read_artifact(repo / "data" / "problems.arrow", "problems")
    assert set(problems["split"].to_pylist()) == {"train", "eval"}
    rollouts = artifacts.read_artifact(repo / "data" / "rollouts.arrow", "rollouts")
    labels = artifacts.read_artifact(repo / "data" / "labels.arrow", "labels")
    assert rollouts.num_rows == labels.num_rows == 8 * 4
    # `dtype: auto` as this machine's CPU flags make it, recorded in every artifact and card
    dtype = runtime.auto_dtype_name(on_cpu=True)
    assert artifacts.artifact_metadata(rollouts)["stats"]["dtype"] == dtype
    assert artifacts.artifact_metadata(labels)["stats"]["dtype"] == dtype
    for name in ("orm", "prm"):
        assert (repo / "data" / "models" / name / "rwpipe-model.json").is_file()
    assert (repo / "data" / "train_prm" / "metrics.json").is_file()
    metrics = json.loads((repo / "data" / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["policy"]["pass@1"] <= 1 and "orm" in metrics["best_of_n"]
    assert "prm_min_weighted" in metrics["best_of_n"]
    assert metrics["rl_vs_base"]["problems"] == 2 and "pass@1" in metrics["policy_rl"]
    assert metrics["search"]["problems"] == 1 and metrics["search"]["tokens_per_problem"] > 0
    assert {k: v["solutions"] for k, v in metrics["processbench"].items() if k != "average"} == {
        "gsm8k": 3, "math": 3
    }  # fmt: skip
    assert "outcome rule" in metrics["processbench_baselines"]["math"]
    assert {"rl_raises_pass1", "majority_beats_pass1", "prm_beats_outcome_rule"} <= set(
        metrics["claims"]
    )  # fmt: skip
    rl = json.loads((repo / "data" / "rl" / "metrics.json").read_text())
    assert rl["dtype"] == dtype
    assert json.loads((repo / "data" / "train_prm" / "metrics.json").read_text())["dtype"] == dtype
    assert rl["steps"] == 2 and (repo / "data" / "rl" / "curves.png").is_file()
    report = (repo / "data" / "eval" / "report.md").read_text()
    assert report.startswith("# rwpipe eval report") and "## What this run shows" in report
    found = json.loads((repo / "data" / "search" / "metrics.json").read_text())
    assert found["problems"] == 2 and set(found["points"]) == set(params_methods())
    assert metrics["search_budget"] == found and "## Test-time scaling" in report
    records = artifacts.read_artifact(repo / "data" / "search" / "records.arrow", "search_records")
    assert records.num_rows == 2 * len(params_methods()) * 2  # problems x methods x budgets
    assert "versus_majority" in found and "Against the majority vote" in report
    assert "Running stage 'prepare'" in out and "Running stage 'annotate'" in out
    again = _sh(repo, "dvc", "repro")
    # only `inputs` (always run: it hashes the files params name) runs, and changes nothing
    assert re.findall(r"Running stage '(\w+)'", again) == ["inputs"], again
    assert "didn't change" in again or "up to date" in again


def test_changing_annotate_params_reruns_annotate_and_what_follows_not_rollout(repo):
    _sh(repo, "dvc", "repro")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "lock", "--allow-empty")
    out = _sh(repo, "dvc", "exp", "run", "-S", "annotate.completion.k=3")
    downstream = ("annotate", "pairs", "train_rm", "train_prm", "rl_rewards", "search", "eval")
    assert all(f"Running stage '{s}'" in out for s in downstream), out
    # rl reads neither reward model at the shipped weights (rl.rewards.orm = prm = 0): the
    # retrained models leave its record unchanged, so it and its rollouts are not re-run
    assert (repo / "data" / "inputs" / "rl.json").is_file()
    upstream_and_rl = ("model", "prepare", "rollout", "rl", "rollout_rl")
    assert not any(f"Running stage '{s}'" in out for s in upstream_and_rl), out
    labels = artifacts.read_artifact(repo / "data" / "labels.arrow", "labels")
    assert artifacts.artifact_metadata(labels)["config"]["completion"]["k"] == 3


def test_changing_only_eval_params_reruns_only_eval(repo):
    _sh(repo, "dvc", "repro")
    out = _sh(repo, "dvc", "exp", "run", "-S", "eval.draws=7")
    assert "Running stage 'eval'" in out
    others = ("model", "prepare", "rollout", "annotate", "train_rm", "train_prm", "rl")
    assert not any(f"Running stage '{s}'" in out for s in others)
