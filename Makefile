# The two commands of the README: `make demo` and `make test`. Each creates
# .venv and installs riskml with everything it needs on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# LightGBM's OpenMP threads spin on a busy machine; passive waiting keeps
# several fits (sweeps, tests) from slowing each other badly.
export OMP_WAIT_POLICY ?= PASSIVE
export MPLBACKEND ?= Agg

DEMO_NAME ?= demo

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or make PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m riskml.generate name=$(DEMO_NAME)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) outputs multirun mlflow.db mlruns data/synthetic/*/ models/*/
