"""Strict params loading: every section of the shipped params.yaml, and each error case.

python -m pytest tests/test_config.py -q
"""

import dataclasses

import pytest
import yaml

from rwpipe.config import (
    SECTIONS,
    GenerationConfig,
    ModelConfig,
    PrepareConfig,
    RLConfig,
    RolloutConfig,
    load_section,
)
from rwpipe.errors import ConfigError
from tests.conftest import ROOT


def test_shipped_params_load_into_every_dataclass():
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(data) == set(SECTIONS), "params.yaml sections and config dataclasses differ"
    for section, cls in SECTIONS.items():
        cfg = load_section(ROOT / "params.yaml", section, cls)
        assert dataclasses.is_dataclass(cfg)


def test_shipped_params_spell_out_every_field():
    """dvc params diff shows only what params.yaml spells out, so every field is in it."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())

    def check(cls, values, where):
        for f in dataclasses.fields(cls):
            if f.type is GenerationConfig and where != "engine":
                continue  # spelled out once, in the shared `engine` section
            assert f.name in values, f"{where}.{f.name} missing from params.yaml"
            if dataclasses.is_dataclass(f.type) or isinstance(f.default_factory, type):
                nested = f.default_factory if isinstance(f.default_factory, type) else f.type
                check(nested, values[f.name], f"{where}.{f.name}")

    for section, cls in SECTIONS.items():
        check(cls, data[section], section)


def test_configs_are_frozen():
    cfg = load_section(ROOT / "params.yaml", "prepare", PrepareConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_train = 3


def _error(write_params, overrides, section, cls) -> str:
    path = write_params(overrides)
    with pytest.raises(ConfigError) as excinfo:
        load_section(path, section, cls)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


def test_unknown_key_lists_allowed_keys(write_params):
    message = _error(write_params, {"prepare": {"n_trian": 5}}, "prepare", PrepareConfig)
    assert "unknown key 'n_trian'" in message and "n_train" in message


def test_unknown_nested_key(write_params):
    overrides = {"prepare": {"synthetic": {"kinds": ["add"], "levels": 3}}}
    message = _error(write_params, overrides, "prepare", PrepareConfig)
    assert "prepare.synthetic: unknown key 'levels'" in message


def test_wrong_type(write_params):
    message = _error(write_params, {"prepare": {"n_train": "many"}}, "prepare", PrepareConfig)
    assert "prepare.n_train: expected int, got str" in message


def test_bool_is_not_an_int(write_params):
    message = _error(write_params, {"prepare": {"n_train": True}}, "prepare", PrepareConfig)
    assert "expected int, got bool" in message


def test_bad_choice(write_params):
    message = _error(write_params, {"prepare": {"format": "csv"}}, "prepare", PrepareConfig)
    assert "prepare.format: 'csv' is not one of auto, gsm8k, math, generic" in message


def test_bad_choice_in_list(write_params):
    overrides = {"prepare": {"synthetic": {"kinds": ["add", "calculus"]}}}
    message = _error(write_params, overrides, "prepare", PrepareConfig)
    assert "prepare.synthetic.kinds[1]: 'calculus' is not one of" in message


def test_value_check_in_post_init(write_params):
    message = _error(write_params, {"model": {"name": "../escape"}}, "model", ModelConfig)
    assert "model: name must be a plain directory name" in message


def test_missing_section(write_params, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("base: {seed: 1}\n")
    with pytest.raises(ConfigError, match="missing section 'prepare'"):
        load_section(path, "prepare", PrepareConfig)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("prepare: [unclosed\n")
    with pytest.raises(ConfigError) as excinfo:
        load_section(path, "prepare", PrepareConfig)
    assert "not valid YAML" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_section(tmp_path / "nope.yaml", "prepare", PrepareConfig)


def test_int_accepted_for_float_and_null_for_optional(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("model: {revision: null}\n")
    assert load_section(path, "model", ModelConfig).revision is None


def test_engine_is_defined_once_and_stages_override_only_what_differs(write_params):
    path = write_params({"engine": {"backend": "hf", "hf_batch_size": 16}})
    rollout = load_section(path, "rollout", RolloutConfig)
    rl = load_section(path, "rl", RLConfig)
    search = load_section(path, "eval").search
    assert rollout.engine.backend == rl.engine.backend == search.engine.backend == "hf"
    assert rollout.engine.hf_batch_size == search.engine.hf_batch_size == 16
    # rl's own mapping names only gpu_memory_utilization; the rest comes from `engine`
    assert rl.engine.vllm.gpu_memory_utilization == 0.5
    assert rollout.engine.vllm.gpu_memory_utilization == 0.85
    assert rl.engine.vllm.max_model_len == rollout.engine.vllm.max_model_len


def test_stage_engine_override_is_checked_strictly(write_params):
    path = write_params({"rl": {"engine": {"vllm": {"gpu_mem": 0.3}}}})
    with pytest.raises(ConfigError, match=r"rl\.engine\.vllm: unknown key 'gpu_mem'"):
        load_section(path, "rl", RLConfig)
