"""Shared fixtures. Tests run offline: the hub variables are set before anything imports
huggingface_hub, which reads them at import time."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from stages.cli import main; sys.argv[0] = 'rwpipe'; main()"


def run_rwpipe(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Run `rwpipe ARGS` in a subprocess, as a user would; assert success unless `check=False`."""
    cmd = [sys.executable, "-c", CLI, *map(str, args)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def write_params(tmp_path):
    """Write a params.yaml: the shipped one with `overrides` merged in per section."""

    def _write(overrides: dict | None = None, name: str = "params.yaml") -> Path:
        data = yaml.safe_load((ROOT / "params.yaml").read_text())
        for section, values in (overrides or {}).items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> tuple[Path, dict]:
    """The embedded default model, materialised once per test session: (directory, info).

    Never skipped: the real model is what users run, and `make test` installs it.
    """
    from rwpipe.config import ModelConfig
    from rwpipe.model.materialize import materialize_model

    out = tmp_path_factory.mktemp("smollm2") / "model"
    return out, materialize_model(ModelConfig(), out)


@pytest.fixture(scope="session")
def smollm2_dir(smollm2) -> Path:
    return smollm2[0]


@pytest.fixture(scope="session")
def model_dir(smollm2_dir: Path) -> str:
    """The real SmolLM2-135M-Instruct, converted once per session (tests/conftest.py)."""
    return str(smollm2_dir)


@pytest.fixture(scope="session")
def hf_generator(model_dir: str) -> Iterator:
    """The real model on transformers in float32, shared by every test that needs it.

    float32, not `dtype: auto`: the engine conventions (seeds, batch independence, greedy
    parity between engines, raw logprobs) hold bit for bit only there. On a CPU with native
    bfloat16, `auto` means bfloat16; `hf_generator_auto` and
    test_backends.py::test_auto_dtype_stays_close_to_float32 check that numerics.
    """
    from rwpipe.backends import load_generator

    generator = load_generator(model_dir, "hf", device="cpu", dtype="float32")
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def hf_generator_auto(model_dir: str, hf_generator) -> Iterator:
    """The real model on transformers at `dtype: auto` (the float32 one where auto is float32)."""
    from rwpipe.backends import load_generator
    from rwpipe.runtime import auto_dtype_name

    if auto_dtype_name(on_cpu=True) == "float32":
        yield hf_generator
        return
    generator = load_generator(model_dir, "hf", device="cpu")
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def vllm_generator(model_dir: str) -> Iterator:
    """The real model on vLLM in float32: one in-process engine per test session."""
    from rwpipe.backends import is_vllm_available, load_generator

    if not is_vllm_available():
        pytest.skip("vllm is not installed")
    # float32 like hf_generator: the two engines agree token for token there
    generator = load_generator(model_dir, "vllm", device="auto", dtype="float32", kv_cache_gib=1.0)
    yield generator
    generator.close()
