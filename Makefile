# The README's two commands. Each creates .venv and installs the package when missing or out of date.
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/cardioseg
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_output

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(CLI) phantom --patients 8 --out $(DEMO)/phantom --overwrite
	$(CLI) data summary $(DEMO)/phantom
	$(CLI) data summary $(DEMO)/phantom/dicom
	$(CLI) data contact-sheet $(DEMO)/phantom --out $(DEMO)/contact_sheet.png --max 8

test: $(STAMP)
	$(PY) -m pytest -q --durations=10

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
