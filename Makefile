# Two commands set everything up on a fresh machine: `make play` (the runtime only) and `make test` (plus the dev
# extras: pytest, playwright, py-slippi...). Each install has its own stamp, so `make test` after `make play` adds
# only the dev extras.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: install runtime play test bench clean

install: $(STAMP)

runtime: $(RUNTIME)

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first: a later unpinned resolve then finds torch satisfied and pulls no CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# The dev extras on top of the runtime (the stamp other tools look for: .venv/.installed).
$(STAMP): $(RUNTIME)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

play: $(RUNTIME)
	$(BIN)/meleewm play $(PLAY_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache
