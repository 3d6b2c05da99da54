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

.PHONY: help install export clean check readme test lab demo docs docs-check reproduce reproduce-all reproduce-tables reproduce-benchmark data bench cost

help: ## list the targets, one line each
	@grep -hE '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv (Python 3.11), install the pinned stack and vlsa (editable), register the `vlsa` kernel

# Reinstalls only when the pins or the packaging change: a second `make install` takes seconds.
# A new .venv takes about 7.6 GB (torch's CUDA build): with less free, say so now, not as pip's OSError minutes later.
INSTALL_GB ?= 8
$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || { free=$$(df -Pk . | awk 'NR == 2 {print int($$4 / 1048576)}'); test "$$free" -ge $(INSTALL_GB) || \
	  { echo "make install: $(CURDIR) has $$free GB free; a new .venv needs about $(INSTALL_GB) GB (torch's CUDA build)" >&2; exit 2; }; \
	  $(PYTHON) -m venv $(VENV); }
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
	@# half the cores per worker: two workers with a torch thread per core each wait on each other (2 cores: 225 s against 109 s).
	@# pytest: two workers too, a test file each (its module fixtures are built once).
	@# Every temporary folder of the notebooks and tests (smoke runs, generated clips: about 2 GB a run) goes into one,
	@# removed when everything passes and kept, with its name printed, when something fails.
	@tmp=$$(mktemp -d -t vlsa-test-XXXXXX) && export TMPDIR=$$tmp OMP_NUM_THREADS=$$(( $$(nproc) > 1 ? $$(nproc) / 2 : 1 )) && \
	  echo "TMPDIR=$$tmp OMP_NUM_THREADS=$$OMP_NUM_THREADS: nbdev_test --n_workers 2, then pytest -n 2 --dist loadfile" && \
	  $(BIN)/nbdev_test --n_workers 2 --timing && $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests; \
	  rc=$$?; if [ $$rc -eq 0 ]; then rm -rf "$$tmp"; else echo "make test: failed; its temporary files are in $$tmp" >&2; fi; exit $$rc

demo: $(STAMP) ## a first run in about 3 minutes: small SyncBench, pre-train, fine-tune, test recalls, search (into results/demo)
	$(BIN)/vlsa demo

# The site is rendered by tools/build_docs.py (nbconvert + MathJax), not by Quarto: the quarto-cli package on PyPI
# downloads its binary from GitHub while it builds, which a machine that reaches only the package registries cannot
MATHJAX := build/docs-js/node_modules/mathjax/es5
docs: $(STAMP) ## the documentation site, from the notebooks, results and data cards, into _docs/ (MathJax 3 from npm)
	@test -f $(MATHJAX)/tex-chtml.js || npm install --silent --no-audit --no-fund --prefix build/docs-js mathjax@3.2.2
	$(BIN)/python tools/build_docs.py --out _docs --mathjax $(MATHJAX)

docs-check: docs ## build the site, then open it in headless Chromium: a figure and a rendered equation (screenshots in _docs/screenshots/)
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (apt, needs root)"; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }
	@$(BIN)/python -c 'import playwright' 2>/dev/null || $(BIN)/python -m pip install --quiet playwright==1.65.2
	VLSA_DOCS_CHECK=1 $(BIN)/python -m pytest -q tests/test_docs_site.py

lab: $(STAMP) ## JupyterLab on nbs/ with the vlsa kernel
	$(BIN)/jupyter lab --notebook-dir=nbs

reproduce: | $(STAMP) ## regenerate every table and figure in results/ (PROFILE=cpu|gpu; or a benchmark: PROFILE=msrvtt ROOT=DIR)
	@test -f $(PCFG) || { echo "make reproduce: there is no $(PCFG); choose PROFILE=cpu or PROFILE=gpu, or a benchmark \
	($(basename $(notdir $(wildcard configs/*.yaml))))" >&2; exit 2; }
	@if [ -n "$(BENCHMARK)" ]; then $(MAKE) --no-print-directory reproduce-benchmark; else \
	test -n "$(SEEDS)" -a -n "$(RUNS)" -a -n "$(RESULTS)" -a -n "$(MANIFEST)" || { echo "make reproduce: $(PCFG) must set \
	runs, results, manifest and seeds, each on one line (seeds: [0, 1])" >&2; exit 2; }; \
	$(MAKE) --no-print-directory reproduce-tables; fi   # a new make reads the package's lists
	@test -n "$(BENCHMARK)" || $(BIN)/vlsa report --file $(PCFG)   # its own line: `make -n` prints the plan, not a report

# A paper benchmark on its real data (configs/msrvtt.yaml, ...): prepare the manifest from ROOT once, fine-tune INIT
# (default: the profile's init) per seed, and write results/<benchmark>/tables/<benchmark>.md. Finished runs are read.
reproduce-all: | $(STAMP) ## make reproduce, then the paper's other studies: Figures 3-5, Table 6 (cpu: many hours; configs/README.md)
	@test -z "$(BENCHMARK)" || { echo "make reproduce-all: the studies run on SyncBench; $(PCFG) is the $(BENCHMARK) \
	benchmark, which \`make reproduce PROFILE=$(PROFILE)\` runs" >&2; exit 2; }
	@$(MAKE) --no-print-directory reproduce STUDIES=1

reproduce-benchmark: | $(STAMP)
	@test -n "$(ROOT)" -o -f "$(MANIFEST)" || { echo "make reproduce PROFILE=$(PROFILE): name the downloaded data set with \
	ROOT=DIR (data_cards/$(BENCHMARK).md says how to get it)" >&2; exit 2; }
	@mkdir -p "$(EXECUTED)"; $(now); echo "  $(BENCHMARK): prepare, fine-tune, score -> $(RESULTS)/tables/$(BENCHMARK).md"
	@$(PAPERMILL) nbs/experiments/benchmark.ipynb "$(EXECUTED)/$(BENCHMARK).ipynb" -r root "$(ROOT)" $(if $(INIT),-r init "$(INIT)")
	@cat "$(RESULTS)/tables/$(BENCHMARK).md"

reproduce-tables: | $(STAMP)
	@test -n "$(TABLE_NOTEBOOKS)" || { echo "make reproduce: could not read the variants and tables \
	(vlsa report --make-vars)" >&2; exit 2; }
	@if $(MAKE) --no-print-directory -q $(REPRODUCED) 2>/dev/null; then \
	  echo "make reproduce$(if $(WITH_STUDIES),-all): every table in $(RESULTS)/ is up to date with $(PCFG) and its runs; nothing to do."; \
	else set -o pipefail; $(MAKE) --no-print-directory $(REPRODUCED) | { grep --line-buffered -v 'is up to date' || true; }; fi

# ---- what make reproduce builds, read from configs/$(PROFILE).yaml -------------------------------------------
PCFG       ?= configs/$(PROFILE).yaml
yaml        = $(shell sed -n 's/^$(1): *\([^#]*\).*/\1/p' $(PCFG) 2>/dev/null)
RUNS       := $(strip $(call yaml,runs))
RESULTS    := $(strip $(call yaml,results))
MANIFEST   := $(strip $(call yaml,manifest))
SEEDS      := $(shell sed -n 's/^seeds: *\[\([^]]*\)\].*/\1/p' $(PCFG) 2>/dev/null | tr ',' ' ')
PRESEEDS   := $(or $(shell sed -n 's/^pretrain_seeds: *\[\([^]]*\)\].*/\1/p' $(PCFG) 2>/dev/null | tr ',' ' '),$(SEEDS))
EXECUTED   := $(RESULTS)/executed
# VARIANTS, PRETRAINED, TABLE_NOTEBOOKS and the STUDY_ lists: their one source is the package (vlsa.report.make_vars), read once it is
# installed; `make reproduce` installs it first, then starts a new make (reproduce-tables) that reads them.
MAKE_VARS  := $(VENV)/make-vars.mk
ifneq ($(wildcard $(STAMP)),)
$(shell $(BIN)/vlsa report --make-vars > $(MAKE_VARS).$$$$ 2>/dev/null && mv $(MAKE_VARS).$$$$ $(MAKE_VARS))
-include $(MAKE_VARS)
endif
PRE_RUNS   := $(foreach v,$(PRETRAINED),$(foreach s,$(PRESEEDS),$(RUNS)/$(v)-s$(s)/eval-test.json))
FT_RUNS    := $(foreach v,$(VARIANTS),$(foreach s,$(SEEDS),$(RUNS)/$(v)-s$(s)-ft/eval-test.json))
TABLES     := $(foreach t,$(TABLE_NOTEBOOKS),$(RESULTS)/tables/$(t).md)
# make reproduce-all (STUDIES=1): the study variants' runs, pre-trained and fine-tuned like the ablation's, and their tables
WITH_STUDIES := $(filter 1,$(STUDIES))
STUDY_PRE  := $(foreach v,$(STUDY_VARIANTS),$(foreach s,$(PRESEEDS),$(RUNS)/$(v)-s$(s)/eval-test.json))
STUDY_FT   := $(foreach v,$(STUDY_VARIANTS),$(foreach s,$(SEEDS),$(RUNS)/$(v)-s$(s)-ft/eval-test.json))
STUDY_TABLES := $(foreach t,$(STUDY_NOTEBOOKS),$(RESULTS)/tables/$(t).md)
SYNTH      := $(strip $(call yaml,synth))
BENCHMARK  := $(strip $(call yaml,benchmark))
CONTROL    := $(patsubst %/manifest.jsonl,%-unlinked/manifest.jsonl,$(MANIFEST))
REPRODUCED := $(TABLES) $(if $(WITH_STUDIES),$(STUDY_TABLES)) $(RESULTS)/README.md
PAPERMILL   = $(BIN)/papermill --kernel vlsa --cwd . --no-progress-bar --log-level WARNING -f $(PCFG)
variant     = $(firstword $(subst -s, ,$(1)))
seed        = $(lastword $(subst -s, ,$(1)))
# the pre-training a fine-tuning seed starts from: its own if pretrain_seeds has it, else the first
init_seed   = $(if $(filter $(1),$(PRESEEDS)),$(1),$(firstword $(PRESEEDS)))
pretrained_of = $(if $(filter neither,$(call variant,$(1))),,$(RUNS)/$(call variant,$(1))-s$(call init_seed,$(call seed,$(1)))/eval-test.json)   # 'neither' starts from scratch
runs_of     = $(foreach v,$(1),$(if $(filter neither,$(v)),,$(foreach s,$(PRESEEDS),$(RUNS)/$(v)-s$(s)/eval-test.json)) $(foreach s,$(SEEDS),$(RUNS)/$(v)-s$(s)-ft/eval-test.json))
now         = date '+[%H:%M:%S]'

.DELETE_ON_ERROR:
.SECONDEXPANSION:

# A run is done when its notebook wrote eval-test.json, last. Runs depend on the data and the profile, not on code.
$(PRE_RUNS) $(STUDY_PRE): $(RUNS)/%/eval-test.json: $(MANIFEST) $(PCFG) | $(STAMP)
	@mkdir -p $(EXECUTED); $(now); echo "  pre-training $* -> $(RUNS)/$*  (executed notebook: $(EXECUTED)/pretrain-$*.ipynb)"
	@$(PAPERMILL) nbs/experiments/pretrain.ipynb $(EXECUTED)/pretrain-$*.ipynb -p variant $(call variant,$*) -p seed $(call seed,$*)

$(FT_RUNS) $(STUDY_FT): $(RUNS)/%-ft/eval-test.json: $(MANIFEST) $(PCFG) $$(call pretrained_of,$$*) | $(STAMP)
	@mkdir -p $(EXECUTED); $(now); echo "  fine-tuning $* -> $(RUNS)/$*-ft  (executed notebook: $(EXECUTED)/finetune-$*.ipynb)"
	@$(PAPERMILL) nbs/experiments/finetune.ipynb $(EXECUTED)/finetune-$*.ipynb -p variant $(call variant,$*) -p seed $(call seed,$*)

$(TABLES): $(RESULTS)/tables/%.md: nbs/experiments/%.ipynb $(PRE_RUNS) $(FT_RUNS) $(PCFG) | $(STAMP)
	@mkdir -p $(EXECUTED); $(now); echo "  table $* -> $@"
	@$(PAPERMILL) $< $(EXECUTED)/$*.ipynb

# a study's table: the runs of its own variants (STUDY_VARIANTS_<notebook>, from the package), the full model's among them
$(STUDY_TABLES): $(RESULTS)/tables/%.md: nbs/experiments/%.ipynb $$(call runs_of,$$(STUDY_VARIANTS_$$*)) $(PCFG) | $(STAMP)
	@mkdir -p $(EXECUTED); $(now); echo "  study $* -> $@"
	@$(PAPERMILL) $< $(EXECUTED)/$*.ipynb

$(RESULTS)/tables/control.md: $(CONTROL)   # GAM on the control data (nbs/experiments/control.ipynb trains it)

# The control: the same world with every sound independent of its object (pre-training and val splits only)
$(CONTROL): | $(STAMP)
	@$(now); echo "  generating the SyncBench control (sound-sight link off) -> $(dir $@)"
	$(BIN)/vlsa synth --profile $(SYNTH) --unlinked --out $(dir $@) --train 0 --test 0

$(RESULTS)/README.md: $(TABLES) $(if $(WITH_STUDIES),$(STUDY_TABLES))
	@$(now); echo "  $@"
	@$(BIN)/vlsa report --file $(PCFG) --readme $@ --quiet

data: data/syncbench/$(PROFILE)/manifest.jsonl ## generate the embedded SyncBench data set for PROFILE (cpu: minutes)

data/syncbench/%/manifest.jsonl: | $(STAMP)
	@$(now); echo "  generating SyncBench ($* profile) -> data/syncbench/$*"
	$(BIN)/vlsa synth --profile $* --out data/syncbench/$* --desync

# Table 7 holds times measured on this machine, so it is made here and not by `make reproduce` (byte-identical tables)
cost: $(STAMP) ## Table 7 on this machine: parameters, FLOPs, clips/s and latency of PROFILE's model and the base preset (minutes)
	@mkdir -p $(EXECUTED); $(now); echo "  table tab7_cost -> $(RESULTS)/tables/tab7_cost.md"
	@$(BIN)/papermill --kernel vlsa --cwd . --no-progress-bar --log-level WARNING nbs/experiments/tab7_cost.ipynb \
	  $(EXECUTED)/tab7_cost.ipynb -p config_file $(PCFG) -p base True -p batch 64 -p steps 5 -p repeats 20 -p results $(RESULTS)

bench: $(STAMP) ## run the benchmarks (minutes), figures to results/bench/*.json
	$(BIN)/python bench/data.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/model.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/attention.py
