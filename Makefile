# ShadowStore: `make demo` runs the main job on a built-in default, `make test` runs every check CI runs.
# Both create the virtual environment .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO_HOME ?= $(CURDIR)/demo-home
PYTEST_WORKERS ?= 2

.PHONY: venv demo test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m shadowstore.tools.demo --home "$(DEMO_HOME)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile
	# the engine, backup and restore suites again with the production maintenance defaults (tests/conftest.py)
	SHADOWSTORE_TEST_MAINTENANCE=production $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" \
		tests/engine tests/backup tests/restore

test: lint unit

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache .hypothesis
