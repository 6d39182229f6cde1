# pretrainer: `make install demo` sets up and runs the embedded demo; `make test` runs the tests.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# The CPU build of torch, installed before the project so that pip never resolves the
# project's `torch` requirement to a multi-GB CUDA build on a machine without a GPU.
# On a GPU machine: make install TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: help install demo test test-all lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install torch (CPU) and the project in editable mode, with test tools and transformers
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev,hf,slurm]"  # hf: transformers (export/import tests); slurm: the launcher config test

demo:  ## run the main job: `pretrainer train` with the defaults (embedded benchmark)
	pretrainer train

test:  ## the default test suite (CPU, no network; excludes slow/gpu/network)
	$(PYTHON) -m pytest -q

test-all:  ## also the slow tests
	$(PYTHON) -m pytest -q -m "not gpu and not network"

lint:  ## ruff
	$(PYTHON) -m ruff check pretrainer tests scripts

bench:  ## training throughput side by side with transformers (tiny/mini on CPU, base shapes on a GPU)
	$(PYTHON) scripts/bench.py
