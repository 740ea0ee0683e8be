# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    install everything, run the whole pipeline on the bundled data
#   make test   install everything, run the test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install run test test-fast bench lint clean

install: $(VENV)/.installed

$(BIN)/uv:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "loopline needs Python 3.11, got " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installs exactly what uv.lock pins (the project itself editable, plus the dev group).
$(VENV)/.installed: uv.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv sync --frozen --compile-bytecode --python $(BIN)/python
	@touch $@

run: install
	$(BIN)/loopline run

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache
