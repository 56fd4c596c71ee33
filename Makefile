# Each target sets up what it needs first: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-pictures \
                texlive-xetex texlive-lang-chinese latexmk

.PHONY: setup tex demo test bench clean

$(BIN)/derive: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/derive

setup: $(BIN)/derive

# TeX Live from Debian's packages, only when latexmk is missing.
tex:
	@command -v latexmk >/dev/null || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(TEX_PACKAGES); }

# The main job: every built-in example derived, checked and typeset (.tex and .pdf, en and zh) into output/.
demo: setup tex
	$(BIN)/derive demo -o output

test: setup tex
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup
	$(BIN)/python benchmarks/derive_scaling.py
	$(BIN)/python benchmarks/gradient_speed.py

clean:
	rm -rf $(VENV) output/*.json build *.egg-info
