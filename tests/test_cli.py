"""CLI wiring, import hygiene and layering.

python -m pytest tests/test_cli.py -q
"""

import ast
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()


def _run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run `rwpipe` exactly as DVC does: a fresh interpreter through the console entry point."""
    code = "import sys; from stages.cli import main; sys.argv[0] = 'rwpipe'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


COMMANDS = ["model", "prepare", "rollout", "annotate", "train-rm", "train-prm", "search", "eval"]


@pytest.mark.parametrize("command", COMMANDS)
def test_stage_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--params" in result.output


def test_score_help():
    result = runner.invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "--format" in result.output


def test_help_does_not_import_heavy_backends():
    code = (
        "import sys; sys.argv = ['rwpipe', 'prepare', '--help']\n"
        "from stages.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_library_never_imports_the_cli_layer():
    offenders = []
    for path in (ROOT / "rwpipe").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in ("typer", "stages")]
    assert offenders == []


def test_params_typo_is_one_line_exit_1(tmp_path, write_params):
    params = write_params({"prepare": {"n_trian": 4}})
    out = tmp_path / "problems.arrow"
    result = _run("prepare", str(out), "--params", str(params))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'n_trian'" in lines[0], result.stderr
    assert not out.exists()


def test_missing_params_file_is_one_line_exit_1(tmp_path):
    result = _run("prepare", str(tmp_path / "p.arrow"), "--params", str(tmp_path / "none.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none.yaml'}: no such params file"
    ]


def test_usage_error_exits_2():
    result = _run("prepare")
    assert result.returncode == 2 and "Missing argument" in result.stderr
