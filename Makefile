# Two commands do all set-up on a fresh machine:
#   make repro   the whole pipeline on the embedded default (offline, CPU, minutes; Snakemake, then dvc commit)
#   make test    the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser slurm repro test test-all test-slow test-cluster test-gpu lint-snakemake clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

install: $(STAMP)

# The report's browser test drives Debian's Chromium (tests/test_report_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the report's browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# `make test-cluster` runs a one-node SLURM cluster on this machine from Debian's packages.
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 \
	  || { echo "installing Debian's slurm-wlm and munge for the cluster test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq slurm-wlm munge; }

# The whole DAG through Snakemake (profiles/repro says why one thread per job), then `dvc commit -f`
# records every output in dvc.lock and DVC's cache, as `dvc repro` would have. Training runs in the
# channels-last memory format (faster on the CPUs measured: bench/README.md), an execution flag kept in
# each trained model's provenance: `make repro EBM_CHANNELS_LAST=0` trains in NCHW.
repro: export EBM_CHANNELS_LAST ?= 1
repro: $(STAMP)
	$(BIN)/snakemake --profile profiles/repro --cores all all
	$(BIN)/dvc commit -f
	@echo "Report: $(CURDIR)/data/report/index.html (markdown: data/report/report.md)"

test: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP) browser
	$(BIN)/python -m pytest

# the tests marked slow (kept out of `make test` for its 10-minute budget); .ci/run runs them
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The embedded default through `snakemake --profile` on a one-node SLURM cluster started and stopped
# here (root), compared with a local run; a train job is killed at its time limit and resumes.
test-cluster: $(STAMP) slurm
	tests/slurm/run.sh

# The GPU path (whole DAG on the GPU, bf16, DDP with SyncBatchNorm): needs an NVIDIA GPU, so CI (CPU only)
# does not run it. See tests/gpu/check.py.
test-gpu: $(STAMP)
	$(BIN)/python tests/gpu/check.py

lint-snakemake: $(STAMP)
	$(BIN)/snakemake --lint

clean:
	rm -rf data/params data/datasets data/train data/pretrain data/resume data/generate data/evaluate data/report logs .snakemake
