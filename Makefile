# Each target sets up what it needs first: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/derive: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/derive

setup: $(BIN)/derive

# The main job: derive and check every built-in example.
demo: setup
	@mkdir -p output
	@for spec in examples/*.yaml; do \
	  echo "== $$spec"; $(BIN)/derive check $$spec || exit 1; \
	  $(BIN)/derive check $$spec --json > output/$$(basename $$spec .yaml).check.json || exit 1; \
	done

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup
	$(BIN)/python benchmarks/derive_scaling.py

clean:
	rm -rf $(VENV) output/*.json build *.egg-info
