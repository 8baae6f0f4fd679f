"""Each DVC stage's code deps, derived from the static import closure of its command.

    .venv/bin/python -m tests.dvc_deps --check   # list what dvc.yaml gets wrong (exit 1 if any)
    .venv/bin/python -m tests.dvc_deps --write   # rewrite the code deps in dvc.yaml
    .venv/bin/python -m tests.dvc_deps --show    # each stage's closure, file by file

The closure is computed with `ast`, nothing is imported. The rule:

- Seeds: the module that defines the stage's command (found from `app.command(...)` in
  stages/cli.py: `rwpipe rollout` -> stages/rollout.py for both `rollout` and `rollout_rl`,
  `rwpipe train-rm` -> stages/train.py), plus the shared CLI modules every command runs
  through, stages/options.py and stages/report.py. stages/cli.py itself is not a seed and not a
  dep: it imports every stage module only to register the commands and turns known errors into
  one line; it computes nothing, and following its imports would make every stage depend on
  every other stage's code.
- Edges: every `import a.b` / `from a.b import c` anywhere in a file, function bodies included
  (this codebase imports heavy modules inside functions), except under `if TYPE_CHECKING:`
  (never executed). Relative imports are resolved. `from pkg import name` also imports
  `pkg/name.py` (or `pkg/name/__init__.py`) when that exists, and importing a module imports
  every package above it (`__init__.py` files). Only files under rwpipe/ and stages/ count.
- Package data: a non-.py file under rwpipe/ or stages/ is in the closure when a closure file
  reads it through `importlib.resources.files("pkg").joinpath("dir", ...)`,
  `pkgutil.get_data("pkg", "path")` or `Path(__file__).parent / "dir" / ...`; the literal
  leading part of the path decides which files (a path that cannot be narrowed statically
  covers every non-.py file of the package).

Deps derived from a closure: a directory is listed when every file DVC sees under it (minus
.dvcignore'd caches) is in the closure, and its parent is not; other files are listed one by
one. Data deps (anything outside rwpipe/ and stages/) are kept as written.

Params: a stage must list exactly the sections its closure loads: the literal section of every
`load_section(params, "<name>", ...)` call, the section named after its command (train-rm ->
train_rm), and `engine` when one of those sections' dataclasses holds a `GenerationConfig`
(load_section merges the shared `engine` section into it). Both are read statically from
rwpipe/config.py (`SECTIONS` and the dataclass annotations).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Iterator
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE_ROOTS = ("rwpipe", "stages")
SHARED_SEEDS = ("stages/options.py", "stages/report.py")
CLI = "stages/cli.py"
# What DVC does not hash inside a directory dep under rwpipe/ or stages/ (.dvcignore's patterns).
IGNORED_DIRS = ("__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "build", "dist")
IGNORED_FILES = ("*.pyc", "*.tmp")


# ----------------------------------------------------------------------------------------------
# Files


def is_code(path: str) -> bool:
    """A dep under rwpipe/ or stages/ (the ones this module derives)."""
    return path.split("/", 1)[0] in CODE_ROOTS


def dvc_files(root: Path, rel: str) -> list[str]:
    """The files DVC hashes for dep `rel`: the file itself, or every file under the directory."""
    path = root / rel
    if path.is_file():
        return [rel]
    out = []
    for p in sorted(path.rglob("*")):
        parts = p.relative_to(root).parts
        if any(fnmatch(d, pat) for d in parts[:-1] for pat in IGNORED_DIRS):
            continue
        if p.is_file() and not any(fnmatch(p.name, pat) for pat in IGNORED_FILES):
            out.append(p.relative_to(root).as_posix())
    return out


def module_file(root: Path, dotted: str) -> str | None:
    """rwpipe/x/y.py or rwpipe/x/y/__init__.py for `rwpipe.x.y`; None outside rwpipe/stages."""
    parts = dotted.split(".")
    if parts[0] not in CODE_ROOTS or not all(parts):
        return None
    base = "/".join(parts)
    for rel in (f"{base}.py", f"{base}/__init__.py"):
        if (root / rel).is_file():
            return rel
    return None


def module_name(rel: str) -> tuple[str, bool]:
    """(`rwpipe.x.y`, is_package) for rwpipe/x/y.py or rwpipe/x/y/__init__.py."""
    parts = rel[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


# ----------------------------------------------------------------------------------------------
# One file: its imports and the package data it reads


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of `if TYPE_CHECKING:` (their `else` still runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _parse(path: Path) -> ast.Module:
    st = path.stat()
    return _parse_cached(path, st.st_mtime_ns, st.st_size)


@cache
def _parse_cached(path: Path, mtime_ns: int, size: int) -> ast.Module:  # an edit re-parses
    return ast.parse(path.read_text(), filename=str(path))


def _stamp(root: Path, rel: str) -> tuple[Path, str, int, int]:
    st = (root / rel).stat()
    return root, rel, st.st_mtime_ns, st.st_size


def imported_modules(root: Path, rel: str) -> frozenset[str]:
    """Dotted names of every module `rel` imports (parents and `from pkg import submodule`)."""
    return _imported_modules(*_stamp(root, rel))


@cache
def _imported_modules(root: Path, rel: str, *_stamp: int) -> frozenset[str]:
    name, is_pkg = module_name(rel)
    package = name if is_pkg else name.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(_parse(root / rel)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif (
            isinstance(node, ast.Call)
            and _call_name(node) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
    out = set()
    for dotted in names:
        parts = dotted.split(".")
        out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(out)


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _const_str(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _static_path(node: ast.AST, rel: str) -> tuple[str, bool] | None:
    """(repository path, narrowed) of a package-data path expression, or None if not one.

    `narrowed` is False when the path stops at the package directory itself (every data file
    of the package is then assumed read).
    """
    name, is_pkg = module_name(rel)
    package = name if is_pkg else name.rpartition(".")[0]
    here = rel.rpartition("/")[0]

    def pkg_dir(arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Name) and arg.id in ("__package__", "__name__"):
            return package.replace(".", "/") if arg.id == "__package__" or not is_pkg else here
        text = _const_str(arg)
        return text.replace(".", "/") if text else None

    if isinstance(node, ast.Call):
        what = _call_name(node)
        if what == "files" and len(node.args) == 1:  # importlib.resources.files("pkg")
            d = pkg_dir(node.args[0])
            return (d, False) if d else None
        if what == "get_data" and len(node.args) == 2:  # pkgutil.get_data("pkg", "a/b")
            d, sub = pkg_dir(node.args[0]), _const_str(node.args[1])
            return (f"{d}/{sub}" if sub else d, bool(sub)) if d else None
        if what == "joinpath" and isinstance(node.func, ast.Attribute):
            inner = _static_path(node.func.value, rel)
            if inner is None:
                return None
            path, narrowed = inner
            for arg in node.args:
                text = _const_str(arg)
                if text is None:
                    break
                path, narrowed = f"{path}/{text}", True
            return path, narrowed
        if what == "Path" and len(node.args) == 1:  # Path(__file__)
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id == "__file__":
                return rel, True
        if what == "resolve" and isinstance(node.func, ast.Attribute):
            return _static_path(node.func.value, rel)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _static_path(node.value, rel)
        if inner is None:
            return None
        return inner[0].rpartition("/")[0], False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        inner = _static_path(node.left, rel)
        if inner is None:
            return None
        text = _const_str(node.right)
        return (f"{inner[0]}/{text}", True) if text else inner
    return None


def package_data(root: Path, rel: str) -> frozenset[str]:
    """The non-.py files under rwpipe/ or stages/ that `rel` reads as package data."""
    return _package_data(*_stamp(root, rel))


@cache
def _package_data(root: Path, rel: str, *_stamp: int) -> frozenset[str]:
    found: set[str] = set()
    stack: list[ast.AST] = [_parse(root / rel)]
    while stack:
        node = stack.pop()
        hit = _static_path(node, rel)
        if hit is None or hit[0] == rel:
            stack.extend(ast.iter_child_nodes(node))
            continue
        path, narrowed = hit
        if not is_code(path):
            continue
        if not narrowed:  # the whole package: every data file, subpackages' included
            path = path if (root / path).is_dir() else path.rpartition("/")[0]
        if (root / path).exists():
            found.update(f for f in dvc_files(root, path) if not f.endswith(".py"))
        else:  # a file name built at run time: whatever starts with the literal part
            parent, _, stem = path.rpartition("/")
            if (root / parent).is_dir():
                found.update(
                    f for f in dvc_files(root, parent)
                    if f.startswith(f"{parent}/{stem}") and not f.endswith(".py")
                )  # fmt: skip
    return frozenset(found)


# ----------------------------------------------------------------------------------------------
# Closures


def closure(root: Path, seeds: Iterable[str]) -> set[str]:
    """Every file under rwpipe/ and stages/ that the seed files import or read, seeds included."""
    todo = [s for s in seeds if (root / s).is_file()]
    for seed in list(todo):  # a seed module's packages run first
        todo += [
            f for n in _parents(module_name(seed)[0]) if (f := module_file(root, n)) is not None
        ]
    seen: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if not rel.endswith(".py"):
            continue
        for dotted in imported_modules(root, rel):
            f = module_file(root, dotted)
            if f is not None and f != CLI:
                todo.append(f)
        seen |= package_data(root, rel)
    return seen


def _parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def command_modules(root: Path) -> dict[str, str]:
    """`rwpipe` command name -> the stages/ file defining it, from stages/cli.py's registrations."""
    tree = _parse(root / CLI)
    where: dict[str, str] = {}  # function name -> module file
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
            f = module_file(root, node.module)
            for a in node.names:
                if f is not None:
                    where[a.asname or a.name] = f
    commands: dict[str, str] = {}
    for node in ast.walk(tree):
        # app.command("name")(function) or app.command()(function)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Call)
            and _call_name(node.func) == "command"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Name)
        ):
            function = node.args[0].id
            name = (_const_str(node.func.args[0]) if node.func.args else None) or function
            if function in where:
                commands[name] = where[function]
    return commands


def load_stages(root: Path) -> dict[str, dict]:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def stage_command(stage: dict) -> str:
    return stage["cmd"].split()[1]


def stage_module(root: Path, command: str) -> str:
    """The stages/ file defining `rwpipe COMMAND` (a command not registered yet in cli.py: the
    stages/<command>.py file defining a function of that name)."""
    found = command_modules(root).get(command)
    if found is not None:
        return found
    function = command.replace("-", "_")
    guess = f"stages/{function}.py"
    if (root / guess).is_file() and any(
        isinstance(n, ast.FunctionDef) and n.name == function for n in _parse(root / guess).body
    ):
        return guess
    raise LookupError(f"rwpipe {command}: not registered in {CLI} and no {guess} defines it")


def stage_closures(root: Path = ROOT) -> dict[str, set[str]]:
    """Stage name -> its closure."""
    out = {}
    for name, stage in load_stages(root).items():
        seeds = [stage_module(root, stage_command(stage)), *SHARED_SEEDS]
        out[name] = closure(root, seeds)
    return out


def code_deps(root: Path, files: set[str]) -> list[str]:
    """The fewest paths covering exactly `files`: whole directories where every file under
    one is in `files`, single files otherwise. Stages' own files first, then rwpipe."""
    complete: dict[str, bool] = {}  # directory -> every file DVC sees under it is in `files`

    def whole(d: str) -> bool:
        if d not in complete:
            complete[d] = set(dvc_files(root, d)) <= files
        return complete[d]

    chosen: set[str] = set()
    for f in files:
        path, parent = f, f.rpartition("/")[0]
        while parent and whole(parent):
            path, parent = parent, parent.rpartition("/")[0]
        chosen.add(path)
    return sorted(chosen, key=lambda p: (p.split("/")[0] != "stages", p))


# ----------------------------------------------------------------------------------------------
# Params


def _config_sections(root: Path) -> tuple[dict[str, str], set[str]]:
    """(section -> dataclass name, the dataclasses holding a GenerationConfig) of config.py."""
    tree = _parse(root / "rwpipe" / "config.py")
    sections: dict[str, str] = {}
    refs: dict[str, set[str]] = {}
    for node in tree.body:
        target = (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
            else node.target if isinstance(node, ast.AnnAssign) else None
        )  # fmt: skip
        if isinstance(target, ast.Name) and target.id == "SECTIONS":
            assert isinstance(node.value, ast.Dict)
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(v, ast.Name):
                    sections[k.value] = v.id
        if isinstance(node, ast.ClassDef):
            names = refs.setdefault(node.name, set())
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    names |= _annotation_names(item.annotation)
    holds: set[str] = {"GenerationConfig"}
    changed = True
    while changed:
        changed = False
        for cls, names in refs.items():
            if cls not in holds and names & holds:
                holds.add(cls)
                changed = True
    return sections, holds


def _annotation_names(node: ast.expr) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):  # "Forward" refs
            try:
                out |= _annotation_names(ast.parse(n.value, mode="eval").body)
            except SyntaxError:
                pass
    return out


def loaded_sections(root: Path, files: Iterable[str], command: str) -> set[str]:
    """The params.yaml sections a stage reads: see the module docstring."""
    sections, holds = _config_sections(root)
    out = set()
    if command.replace("-", "_") in sections:
        out.add(command.replace("-", "_"))
    for rel in files:
        if not rel.endswith(".py"):
            continue
        for node in _runtime_nodes(_parse(root / rel)):
            if isinstance(node, ast.Call) and _call_name(node) == "load_section":
                arg = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "section"), None
                )  # fmt: skip
                text = _const_str(arg) if arg is not None else None
                if text is not None:
                    out.add(text)
    if any(sections.get(s) in holds for s in out):
        out.add("engine")
    return out


# ----------------------------------------------------------------------------------------------
# Checking and writing dvc.yaml


def problems(root: Path = ROOT) -> list[str]:
    """One line per disagreement between dvc.yaml and the closures (empty: all agree)."""
    out = []
    closures = stage_closures(root)
    for name, stage in load_stages(root).items():
        files = closures[name]
        listed = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps") or []]
        covered: set[str] = set()
        for dep in filter(is_code, listed):
            under = dvc_files(root, dep) if (root / dep).exists() else []
            if not under:
                out.append(f"{name}: dep {dep} does not exist")
            for f in sorted(set(under) - files):
                why = "" if f == dep else f" (under dep {dep})"
                out.append(f"{name}: dep {f}{why} is not in the stage's closure")
            covered |= set(under)
        for f in sorted(files - covered):
            out.append(f"{name}: {f} is in the stage's closure but not a dep")
        want = code_deps(root, files)
        if not out and [d for d in listed if is_code(d)] != want:
            out.append(f"{name}: code deps not in canonical form (run --write): {want}")
        params = set(stage.get("params") or [])
        needed = loaded_sections(root, files, stage_command(stage))
        for s in sorted(needed - params):
            out.append(f"{name}: params section {s} is loaded but not listed")
        for s in sorted(params - needed):
            out.append(f"{name}: params section {s} is listed but not loaded")
    return out


_STAGE = re.compile(r"^  ([A-Za-z_][\w-]*):")
_DEPS = re.compile(r"^    deps:\s*(#.*)?$")
_ENTRY = re.compile(r"^      - (.*)$")


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml `text` with each stage's code deps replaced by `deps[stage]`; data deps, their
    order and comments, and everything outside the deps blocks stay as written."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _STAGE.match(line):
            stage = m.group(1)
        if stage in deps and _DEPS.match(line):
            out.append(line)
            i += 1
            kept: list[str] = []
            while i < len(lines) and (_ENTRY.match(lines[i]) or lines[i].startswith("      #")):
                m = _ENTRY.match(lines[i])
                value = m.group(1).split(" #", 1)[0].strip() if m else ""
                if not (m and is_code(value)):
                    kept.append(lines[i])
                i += 1
            out += kept + [f"      - {d}\n" for d in deps[stage]]
            continue
        out.append(line)
        i += 1
    return "".join(out)


def write(root: Path = ROOT) -> bool:
    """Rewrite dvc.yaml's code deps from the closures; True if the file changed."""
    closures = stage_closures(root)
    deps = {name: code_deps(root, files) for name, files in closures.items()}
    path = root / "dvc.yaml"
    old = path.read_text()
    new = rewrite(old, deps)
    missing = [s for s in deps if s in load_stages(root) and not _has_deps_block(old, s)]
    if missing:
        raise SystemExit(f"dvc.yaml: stages without a deps: block to fill: {', '.join(missing)}")
    if new != old:
        path.write_text(new)
    return new != old


def _has_deps_block(text: str, stage: str) -> bool:
    current = None
    for line in text.splitlines():
        if m := _STAGE.match(line):
            current = m.group(1)
        elif current == stage and _DEPS.match(line):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.dvc_deps", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="report differences (exit 1 if any)")
    group.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    group.add_argument("--show", action="store_true", help="print each stage's closure")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.show:
        for name, files in stage_closures(args.root).items():
            print(f"{name}:")
            print("".join(f"  {f}\n" for f in sorted(files)), end="")
        return 0
    if args.write:
        changed = write(args.root)
        print("dvc.yaml: code deps rewritten" if changed else "dvc.yaml: code deps up to date")
    found = problems(args.root)
    print("".join(f"{p}\n" for p in found), end="")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
