# pretrainer: `make install demo` sets up and runs the embedded demo; `make test` runs the tests.
#
# Everything installs into a virtual environment: the active one (a venv or conda env), else
# ./.venv, created on first use. A Debian/Ubuntu system Python refuses `pip install` outside
# one ("externally-managed-environment", PEP 668). Use the venv afterwards with
# `source .venv/bin/activate`, or call .venv/bin/pretrainer.
BASE_PYTHON ?= python3
ifdef VIRTUAL_ENV
ENV_DIR := $(VIRTUAL_ENV)
else ifdef CONDA_PREFIX
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := .venv
endif
PYTHON := $(ENV_DIR)/bin/python
PIP := $(PYTHON) -m pip
# The CPU build of torch, installed before the project so that pip never resolves the
# project's `torch` requirement to a multi-GB CUDA build on a machine without a GPU.
# On a GPU machine: make install TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
# What the tests import beyond the project's own dependencies: the dev, hf and slurm extras.
TEST_MODULES := pytest ruff hypothesis transformers safetensors hydra_plugins.hydra_submitit_launcher

.PHONY: help install demo test test-deps test-all lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PYTHON):
	@$(BASE_PYTHON) -m venv $(ENV_DIR) || { echo "could not create $(ENV_DIR): install Python's venv module \
	(Debian/Ubuntu: apt install python3-venv) or activate a virtual environment first"; exit 1; }
	@echo "created the virtual environment $(ENV_DIR) (source $(ENV_DIR)/bin/activate to use pretrainer directly)"

install: $(PYTHON)  ## install torch (CPU) and the project (editable) into the virtual environment: the lean runtime set
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .

$(ENV_DIR)/bin/pretrainer: | $(PYTHON)  # `make demo` on a fresh checkout installs first
	$(MAKE) install

demo: $(ENV_DIR)/bin/pretrainer  ## run the main job: `pretrainer train` with the defaults (embedded benchmark)
	$(ENV_DIR)/bin/pretrainer train

test-deps: $(PYTHON)  ## install the test tools and the optional extras the tests cover (dev, hf, slurm), once
	@$(PYTHON) -c "import importlib.metadata as m, importlib.util as u, sys; m.version('pretrainer'); \
		sys.exit(any(u.find_spec(name) is None for name in sys.argv[1:]))" $(TEST_MODULES) 2>/dev/null \
		|| { $(PIP) install "$(TORCH_SPEC)" && $(PIP) install -e ".[dev,hf,slurm]"; }

test: test-deps  ## the default test suite (CPU, no network; excludes slow/gpu/network)
	$(PYTHON) -m pytest -q

test-all: test-deps  ## also the slow tests
	$(PYTHON) -m pytest -q -m "not gpu and not network"

lint: test-deps  ## ruff
	$(PYTHON) -m ruff check pretrainer tests scripts

bench: test-deps  ## training throughput side by side with transformers (tiny/mini on CPU, base shapes on a GPU)
	$(PYTHON) scripts/bench.py
