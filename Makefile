# rnnclf developer tasks. `make install` builds .venv with torch $(TORCH_VERSION) and rnnclf.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data/ag_news
TORCH_VERSION ?= 2.13.0
# Where `make install` gets torch. Empty: pip's own sources, i.e. a local wheel where pip is set
# up with one (find-links), else PyPI, whose Linux wheel is the CUDA build (gigabytes with its
# NVIDIA libraries). The CPU build: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A CUDA build: the index URL that https://pytorch.org/get-started/locally/ gives for it.
TORCH_INDEX ?=

.PHONY: install test test-fast train bench gpu-bench lint format clean

install:  ## .venv with torch (from TORCH_INDEX, see above) and rnnclf in editable mode
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ]; then echo "torch $(TORCH_VERSION) from $(TORCH_INDEX)"; \
	else echo "torch $(TORCH_VERSION) from pip's sources: a local wheel if pip has one, else PyPI" \
		"(on Linux the CUDA build; for the CPU build: make install" \
		"TORCH_INDEX=https://download.pytorch.org/whl/cpu)"; fi
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"

test:  ## every test, including the real-data regression (a few minutes)
	$(BIN)/python -m pytest -q

test-fast:  ## unit and CLI tests only
	$(BIN)/python -m pytest -q -m "not slow"

train:  ## the default experiment on the shared AG News files (or downloads AG News)
	@if [ -f $(SHARED_DATA)/train_subset.csv ]; then \
		$(BIN)/rnnclf train data.dir=$(SHARED_DATA) data.train_file=train_subset.csv $(ARGS); \
	else \
		$(BIN)/rnnclf train $(ARGS); \
	fi

bench:  ## speed on this machine vs a naive loop (docs/benchmarks.md; ARGS=--quick for a short run)
	$(BIN)/python scripts/bench.py $(ARGS)

gpu-bench:  ## the CUDA measurement: default and 2-layer BiLSTM-256, fp32/bf16/fp16 (docs/benchmarks.md)
	$(BIN)/python scripts/gpu_bench.py $(ARGS)

lint:
	$(BIN)/ruff check rnnclf tests scripts

format:
	$(BIN)/ruff format rnnclf tests scripts

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
