# vlsa: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install.stamp
PROFILE ?= cpu
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0

.PHONY: help install export clean check readme test lab reproduce data bench

help: ## list the targets, one line each
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv (Python 3.11), install the pinned stack and vlsa (editable), register the `vlsa` kernel

# Reinstalls only when the pins or the packaging change: a second `make install` takes seconds.
$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name vlsa --display-name 'Python (vlsa)' >/dev/null
	@touch $@
	@echo "installed: $$($(BIN)/python -c 'import torch, vlsa; print("vlsa", vlsa.__version__, "torch", torch.__version__)')"

export: $(STAMP) ## export notebooks to the vlsa package and README.md from nbs/index.ipynb
	$(BIN)/nbdev_export
	$(BIN)/python tools/render_readme.py

readme: $(STAMP) ## regenerate README.md from nbs/index.ipynb
	$(BIN)/python tools/render_readme.py

clean: $(STAMP) ## strip notebook metadata and outputs noise (nbdev_clean)
	$(BIN)/nbdev_clean

check: $(STAMP) ## fail, naming the files, if nbdev_clean, nbdev_export or the README would change anything
	PATH=$(abspath $(BIN)):$$PATH bash tools/check_clean.sh

test: $(STAMP) ## install if needed, then check, then nbdev_test (2 workers), then pytest
	$(MAKE) --no-print-directory check
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(BIN)/python -m pytest -q tests

lab: $(STAMP) ## JupyterLab on nbs/ with the vlsa kernel
	$(BIN)/jupyter lab --notebook-dir=nbs

reproduce: ## regenerate every table and figure in results/ (PROFILE=cpu|gpu)
	@echo "make reproduce: not built yet. The experiment notebooks (issue 8) need SyncBench (issue 4)," >&2
	@echo "the training engine (issue 7) and retrieval (issue 6); nothing in results/ was regenerated." >&2
	@exit 1

data: data/syncbench/$(PROFILE)/manifest.jsonl ## generate the embedded SyncBench data set for PROFILE (cpu: minutes)

data/syncbench/%/manifest.jsonl: | $(STAMP)
	$(BIN)/vlsa synth --profile $* --out data/syncbench/$* --desync

bench: $(STAMP) ## run the benchmarks (minutes), figures to results/bench/*.json
	$(BIN)/python bench/data.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/model.py
