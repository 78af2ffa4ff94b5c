# Two commands a new user needs: `make repro` (set up + run the pipeline on the built-in sample)
# and `make test` (set up + run the test suite). Both are idempotent.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup repro test bench clean-venv

setup:
	bash scripts/setup.sh

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
