"""dvc.yaml's code deps and params follow each stage's import closure (tests/dvc_deps.py), and
DVC itself marks exactly the stages whose closure holds an edited file.

    python -m pytest tests/test_dvc_deps.py -q
    python -m tests.dvc_deps --write     # after moving code: regenerate the deps
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests import dvc_deps
from tests.conftest import ROOT

STAGES = dvc_deps.load_stages(ROOT)
CLOSURES = dvc_deps.stage_closures(ROOT)


@cache
def _problems() -> tuple[str, ...]:
    return tuple(dvc_deps.problems(ROOT))


@pytest.mark.parametrize("stage", list(STAGES))
def test_code_deps_are_the_stage_closure(stage):
    """Every closure file is covered by a dep, every code dep is in the closure (a directory
    dep: every file under it), and the params are the sections the closure loads."""
    found = [p for p in _problems() if p.startswith(f"{stage}: ")]
    assert not found, "\n".join(found + ["fix: python -m tests.dvc_deps --write"])


def test_known_closures():
    """Spot checks of what the rule must find (imports inside functions, package data)."""
    assert "rwpipe/verify.py" in CLOSURES["eval"]  # eval -> score -> train -> verify
    assert "rwpipe/judge/templates/critique.txt" in CLOSURES["eval"]  # importlib.resources
    assert "rwpipe/judge/__init__.py" in CLOSURES["annotate"]
    # the model-directory check lives in the core now: editing rollout no longer reruns annotate
    assert "rwpipe/rollout/__init__.py" not in CLOSURES["annotate"]
    assert "rwpipe/artifacts.py" in CLOSURES["annotate"]
    assert {"rwpipe/train/__init__.py", "rwpipe/score/__init__.py"} <= CLOSURES["eval"]
    assert CLOSURES["rollout"] == CLOSURES["rollout_rl"]  # one command, two stages
    assert CLOSURES["train_rm"] == CLOSURES["train_prm"]
    for stage, files in CLOSURES.items():
        assert "stages/cli.py" not in files and "stages/probe.py" not in files, stage
        assert {"stages/options.py", "stages/report.py", "rwpipe/__init__.py"} <= files, stage
        if stage not in ("inputs", "rl_rewards"):  # the two stages that only digest
            assert "rwpipe/inputs.py" not in files, stage


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_closure_rule_on_a_small_tree(tmp_path):
    root = _tree(tmp_path, {
        "stages/__init__.py": "",
        "stages/cli.py": "from stages.a import a\nfrom stages.b import b\napp.command()(a)\n",
        "stages/a.py": """
            from typing import TYPE_CHECKING
            from rwpipe import top
            if TYPE_CHECKING:
                from rwpipe import hidden
            def a():
                from rwpipe.pkg import sub
                from . import other
                import rwpipe.lazy as lazy
            """,
        "stages/b.py": "from rwpipe import unused\n",
        "stages/other.py": "",
        "rwpipe/__init__.py": "",
        "rwpipe/top.py": "",
        "rwpipe/hidden.py": "",
        "rwpipe/unused.py": "",
        "rwpipe/lazy.py": "from .data import read\n",
        "rwpipe/data/__init__.py": """
            from importlib import resources
            def read(name):
                return resources.files("rwpipe.data").joinpath("tmpl", f"{name}.txt").read_text()
            """,
        "rwpipe/data/tmpl/x.txt": "x",
        "rwpipe/data/other.yaml": "not read",
        "rwpipe/pkg/__init__.py": "",
        "rwpipe/pkg/sub.py": "",
        "rwpipe/pkg/spare.py": "",
    })  # fmt: skip
    assert dvc_deps.stage_module(root, "a") == "stages/a.py"
    files = dvc_deps.closure(root, ["stages/a.py"])
    assert files == {
        "stages/__init__.py", "stages/a.py", "stages/other.py", "rwpipe/__init__.py",
        "rwpipe/top.py", "rwpipe/lazy.py", "rwpipe/pkg/__init__.py", "rwpipe/pkg/sub.py",
        "rwpipe/data/__init__.py", "rwpipe/data/tmpl/x.txt",
    }  # fmt: skip
    # whole directories only where every file under them is used
    assert dvc_deps.code_deps(root, files) == [
        "stages/__init__.py", "stages/a.py", "stages/other.py", "rwpipe/__init__.py",
        "rwpipe/data/__init__.py", "rwpipe/data/tmpl", "rwpipe/lazy.py",
        "rwpipe/pkg/__init__.py", "rwpipe/pkg/sub.py", "rwpipe/top.py",
    ]  # fmt: skip


def test_rewrite_keeps_data_deps_comments_and_the_rest():
    text = textwrap.dedent("""\
        stages:
          one:  # a comment
            cmd: rwpipe one x
            deps:
              - data/x.arrow  # data
              - rwpipe/old.py
              # a note
              - stages/one.py
            params:
              - one
            outs:
              - data/y.arrow
          two:
            cmd: rwpipe two
            deps:
              - rwpipe/two
        """)
    new = dvc_deps.rewrite(text, {"one": ["stages/one.py", "rwpipe/new"]})
    assert new == text.replace(
        "      - rwpipe/old.py\n      # a note\n      - stages/one.py\n",
        "      # a note\n      - stages/one.py\n      - rwpipe/new\n",
    )
    assert dvc_deps.rewrite(new, {"one": ["stages/one.py", "rwpipe/new"]}) == new


# ----------------------------------------------------------------------------------------------
# DVC's own view, in a scratch repository: a lock recorded without running anything


def _sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _resolve(text: str, params: dict) -> str:
    def value(match: re.Match) -> str:
        node = params
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def test_dvc_status_marks_exactly_the_stages_using_an_edited_file(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml", "rwpipe", "stages", ".dvcignore"):
        src, dst = ROOT / name, repo / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    _sh(repo, "git", "init", "-q")
    _sh(repo, "dvc", "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    # prepare reads a local file; the inputs stage's JSONs are the real ones
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["train"] = "data/train.jsonl"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "data").mkdir()
    (repo / "data" / "train.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    monkeypatch.chdir(repo)
    from rwpipe.inputs import write_inputs

    write_inputs("data/inputs", "params.yaml")
    # placeholders for every other output: a directory for a suffix-less path
    for stage in STAGES.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = repo / _resolve(entry if isinstance(entry, str) else next(iter(entry)), params)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix:
                path.write_text("placeholder\n")
            else:
                path.mkdir()
                (path / "placeholder").write_text("placeholder\n")
    _sh(repo, "dvc", "commit", "-f")  # the lock, as if every stage had run

    templates = sorted((repo / "rwpipe" / "judge" / "templates").iterdir())
    edited = [
        "rwpipe/verify.py",
        templates[0].relative_to(repo).as_posix(),
        "rwpipe/train/__init__.py",
        "stages/probe.py",  # no stage's closure: `rwpipe probe` is not a stage
    ]
    for rel in edited:
        with (repo / rel).open("a") as f:
            f.write("\n# edited\n")
    (repo / "data" / "train.jsonl").write_text('{"question": "2+2", "answer": "4"}\n')
    assert write_inputs("data/inputs", "params.yaml") == {
        "model": False, "prepare": True, "eval": False,
    }  # fmt: skip
    edited.append("data/inputs/prepare.json")

    status = json.loads(_sh(repo, "dvc", "status", "--json"))
    changed = {
        stage: {d for entry in entries if isinstance(entry, dict)
                for d in entry.get("changed deps", {})}
        for stage, entries in status.items()
    }  # fmt: skip
    assert "always changed" in status.pop("inputs")  # and its out prepare.json, rewritten
    for rel in edited:
        marked = {s for s, deps in changed.items() if any(rel == d or rel.startswith(d + "/")
                                                          for d in deps)}  # fmt: skip
        expected = {s for s, files in CLOSURES.items() if rel in files and s != "inputs"}
        if rel == "data/inputs/prepare.json":
            expected = {"prepare"}
        assert marked == expected, f"{rel}: dvc status marks {sorted(marked)}"
    assert set(status) == {s for s, deps in changed.items() if deps and s != "inputs"}
