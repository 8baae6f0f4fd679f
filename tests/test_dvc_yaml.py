"""dvc.yaml, params.yaml and the stages agree with each other (code deps and params against
each stage's import closure: tests/test_dvc_deps.py).

python -m pytest tests/test_dvc_yaml.py -q
"""

import re
from pathlib import Path

import yaml

from rwpipe.config import SECTIONS
from stages.cli import app
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _resolve(text: str) -> str:
    """Expand DVC's ${section.key} templating from params.yaml."""

    def value(match: re.Match) -> str:
        node = PARAMS
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def _paths(entries) -> list[str]:
    return [_resolve(next(iter(e)) if isinstance(e, dict) else e) for e in entries or []]


def test_every_cmd_is_an_rwpipe_command_named_after_its_stage():
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    for name, stage in STAGES.items():
        words = stage["cmd"].split()
        assert words[0] == "rwpipe", name
        assert words[1] in registered, f"{name}: unknown command {words[1]}"
        # a stage runs its namesake command, or reuses one under a suffixed name (rollout_rl)
        command = words[1].replace("-", "_")
        assert name == command or name.startswith(command + "_"), f"stage {name} runs {words[1]}"


def test_every_params_section_exists_and_has_a_dataclass():
    for name, stage in STAGES.items():
        for section in stage.get("params", []):
            assert isinstance(section, str), f"{name}: list whole sections, not single keys"
            assert section in PARAMS, f"{name}: section {section} not in params.yaml"
            assert section in SECTIONS, f"{name}: section {section} has no dataclass"
        # a command with a params section of its own lists it (`inputs` has none: it reads
        # the sections naming files; tests/test_dvc_deps.py checks every stage's sections)
        section = stage["cmd"].split()[1].replace("-", "_")
        if section in SECTIONS:
            assert section in stage.get("params", []), f"{name}: its section is not a param"


def test_every_out_appears_in_its_cmd():
    for name, stage in STAGES.items():
        cmd = _resolve(stage["cmd"])
        for out in (
            _paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots"))
        ):
            # the path itself, or a directory above it that the command writes into
            parents = [out] + [str(p) for p in Path(out).parents if str(p) not in (".", "data")]
            assert any(p in cmd.split() for p in parents), f"{name}: out {out} not in cmd"
            assert out.startswith("data/"), f"{name}: out {out} outside data/"


def test_stage_file_and_dependencies_exist():
    for name, stage in STAGES.items():
        deps = _paths(stage.get("deps"))
        command = _resolve(stage["cmd"]).split()[1]
        callback = next(
            c.callback for c in app.registered_commands
            if (c.name or c.callback.__name__) == command
        )  # fmt: skip
        module = callback.__module__.replace(".", "/") + ".py"
        assert module in deps, f"{name}: its stage file {module} is not a dep"
        # metrics and plots are outs too (eval reads the search stage's metrics.json)
        outs = {p for s in STAGES.values() for key in ("outs", "metrics", "plots")
                for p in _paths(s.get(key))}  # fmt: skip
        for dep in deps:
            assert (ROOT / dep).exists() or dep in outs, f"{name}: dep {dep} does not exist"
