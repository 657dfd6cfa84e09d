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
# The venv is ours: its first process writes the bytecode of what riskml imports, so that no later one
# compiles mlflow, sklearn and pandas again (~10 s a process where PYTHONDONTWRITEBYTECODE is set).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or make PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# uv (from PyPI) installs the versions pip would in a fraction of its time
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	@touch $(STAMP)

# The whole job end to end on the embedded default: simulate, train and register the scoring
# system (MLflow on ./mlflow.db), a baseline to compare, then score a fresh portfolio.
demo: $(STAMP)
	$(BIN)/python -m riskml.generate
	$(BIN)/python -m riskml.train
	$(BIN)/python -m riskml.train target=adverse_3m model=logistic
	$(BIN)/python -m riskml.compare
	$(BIN)/python -m riskml.generate name=portfolio seed=1 n_borrowers=20000
	$(BIN)/python -m riskml.predict input=data/synthetic/portfolio/panel.parquet output=predictions/portfolio.parquet
	@echo
	@echo "Results:"
	@echo "  data sets     data/synthetic/default/, data/synthetic/portfolio/"
	@echo "  model         models/riskml/ (the scoring system: adverse, status, recovery; LightGBM text + JSON)"
	@echo "                registered in MLflow as models:/riskml@champion"
	@echo "  MLflow store  mlflow.db, artifacts in mlartifacts/"
	@echo "  predictions   predictions/portfolio.parquet (+ .rejects.parquet, .summary.json)"
	@echo "  MLflow UI     $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db"

test: $(STAMP)
	@# two workers, a test file each at a time: much of the suite waits (servers, processes, compiling),
	@# so the second core is spent rather than idle; a file's module fixtures stay in one worker
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

bench: $(STAMP)
	@# bench_scorer's competitors, bench-only: riskml never imports them
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_scorer.py
	$(BIN)/python benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) outputs multirun mlflow.db mlruns mlartifacts predictions data/synthetic/*/ models/*/
