# Two commands a new user needs: `make repro` (set up + run the pipeline on the built-in sample)
# and `make test` (set up + run the test suite). Both are idempotent.
# dvc.yaml's commands call `python`, so the venv's bin/ goes first on PATH (as `source
# .venv/bin/activate` would do for a shell).
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test deps clean-venv

setup:
	bash scripts/setup.sh

repro: setup
	dvc repro

test:
	LLMPIPE_EXTRAS=dev,ray bash scripts/setup.sh
	python -m pytest -q

# each dvc.yaml stage's one code dep, data/code/stages.NAME.json (after adding a stage)
deps:
	python scripts/code_deps.py --write

clean-venv:
	rm -rf $(VENV)
