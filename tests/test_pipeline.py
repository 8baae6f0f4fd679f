"""The pipeline under DVC, in a scratch copy of the repository: `dvc repro` builds the
artifacts, a second `dvc repro` does nothing, `dvc exp run -S` overrides a param.

    python -m pytest tests/test_pipeline.py -q
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rwpipe import artifacts
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
    _sh(root, "git", "init", "-q")
    _sh(root, "git", "config", "user.email", "t@example.invalid")
    _sh(root, "git", "config", "user.name", "test")
    _sh(root, "dvc", "init", "-q", "-f")
    shutil.copy2(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "pipeline")
    return root


def test_repro_builds_then_is_a_no_op(repo):
    out = _sh(repo, "dvc", "repro")
    model = repo / "data" / "models" / "smollm2-135m-instruct"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    problems = artifacts.read_artifact(repo / "data" / "problems.arrow", "problems")
    assert set(problems["split"].to_pylist()) == {"train", "eval"}
    assert "Running stage 'prepare'" in out
    again = _sh(repo, "dvc", "repro")
    assert "Running stage" not in again
    assert "didn't change" in again or "up to date" in again


def test_exp_run_overrides_a_param_and_reruns_only_prepare(repo):
    _sh(repo, "dvc", "repro")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "lock", "--allow-empty")
    out = _sh(repo, "dvc", "exp", "run", "-S", "prepare.n_eval=8")
    assert "Running stage 'prepare'" in out and "Running stage 'model'" not in out
    problems = artifacts.read_artifact(repo / "data" / "problems.arrow", "problems")
    assert problems["split"].to_pylist().count("eval") == 8
