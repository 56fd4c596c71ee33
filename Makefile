# Each target sets up what it needs first: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-pictures \
                texlive-xetex texlive-lang-chinese texlive-fonts-recommended lmodern latexmk poppler-utils
# The browser tests: Debian's Chromium (driven by Playwright) and KaTeX (renders the Markdown's math).
BROWSER_PACKAGES := chromium libjs-katex

# Installs, with apt-get, those of the named Debian packages that are missing.
apt_install = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; }

.PHONY: setup tex browser demo test bench clean

$(BIN)/derive: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/derive

setup: $(BIN)/derive

# TeX Live (and poppler-utils, for the graphs' SVG and PNG) from Debian's packages, where missing.
tex:
	@$(call apt_install,$(TEX_PACKAGES))

browser:
	@$(call apt_install,$(BROWSER_PACKAGES))

# The main job: every built-in example derived, checked and typeset (.tex and .pdf, en and zh) into output/.
demo: setup tex
	$(BIN)/derive demo -o output

test: setup tex browser
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup
	$(BIN)/python benchmarks/derive_scaling.py
	$(BIN)/python benchmarks/blocks_scaling.py
	$(BIN)/python benchmarks/conv_concrete.py
	$(BIN)/python benchmarks/gradient_speed.py
	$(BIN)/python benchmarks/web_load.py

clean:
	rm -rf $(VENV) output/*.json build *.egg-info
