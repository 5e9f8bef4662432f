# Two commands do everything on a fresh machine with python3 and pip:
#   make run   - the main job: the default sweep (results table + figures in runs/default)
#   make test  - the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test run study study-quick clt-demo bench bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n auto -q -p no:cacheprovider tests

run: $(STAMP)
	$(VENV)/bin/rgsym-sweep --config=experiments/configs/default.py --workdir=runs/default

# The study behind docs/RESULTS.md: every run, figure and table (runs/study-<mode>/,
# docs/figures/study/<mode>/); resumable.  study-quick: the tiny version a test reproduces.
study: $(STAMP)
	$(PY) experiments/study/run.py

study-quick: $(STAMP)
	$(PY) experiments/study/run.py --quick

clt-demo: $(STAMP)
	$(PY) experiments/clt_flow.py --workdir=runs/clt_flow

# PyTorch is a benchmark peer only: the CPU wheel on this machine's disk.
bench-deps: $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0

bench: bench-deps
	$(PY) benchmarks/sweep_throughput.py
	$(PY) benchmarks/propagation_vs_mc.py

clean:
	rm -rf $(VENV) runs .pytest_cache
