# Two commands on a fresh machine:
#   make pipeline   create .venv, install, (re)create the built-in dataset, run `dvc repro`
#   make test       create .venv if needed, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup pipeline test data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# The built-in dataset is generated, not downloaded; data.dvc pins its hash.
data: setup
	test -d data/images || $(BIN)/python -m seglib synth --out data

# Ends with each model's test Dice, the verdict, and how the run stands against the committed
# reference (identical on the kind of CPU that made it; docs/determinism.md). The full difference:
# `dvc metrics diff`.
pipeline: data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(BIN)/python -m seglib summary

# Two workers (one per core), a test file each at a time: a file's tests share its module fixtures.
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile --durations=25
