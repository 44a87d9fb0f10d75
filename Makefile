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

# Ends with the difference from the committed reference: nothing on any x86-64 CPU with AVX2
# (CPU paths and threads are pinned, docs/determinism.md).
pipeline: data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "Metrics against the committed reference (empty = identical; see docs/determinism.md if not):"
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc metrics diff

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest
