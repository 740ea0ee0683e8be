# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    install everything, run the whole pipeline on the bundled data
#   make test   install everything, run the test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install run test test-fast test-image bench bench-serving image lint clean

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

# The dashboard test renders the page in headless Chromium, the image registry test pushes to
# a registry on 127.0.0.1 (Debian's chromium, buildah, skopeo, docker-registry); without them
# (no root, no apt) those tests are skipped.
test: install
	@command -v chromium >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 && \
	  command -v docker-registry >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    chromium buildah skopeo docker-registry >/dev/null 2>&1; } || \
	  echo "chromium, buildah, skopeo or docker-registry not installed: the dashboard" \
	    "rendering and image registry tests will be skipped"
	$(BIN)/python -m pytest

# Unit tests only (tests/unit, about a minute); tests/e2e runs the real pipeline, servers, builds.
test-fast: install
	$(BIN)/python -m pytest tests/unit

bench: install
	$(BIN)/python bench/run.py

# Serving figures: wrk (Debian) drives each server; mlflow goes into its own venv.
bench-serving: install
	command -v wrk >/dev/null || apt-get install -y -q wrk
	test -f models/model.onnx || $(BIN)/loopline run
	$(BIN)/python bench/serving.py

# The OCI image of the served version (slow; not part of `make test`): Docker if a daemon
# answers, else buildah on the local Debian base image that scripts/image-base.sh makes
# (it installs buildah and debootstrap with apt-get when missing; root, no sudo).
image: install
	test -f models/model.onnx || $(BIN)/loopline run
	if docker info >/dev/null 2>&1; then $(BIN)/loopline containerize --backend docker; \
	else bash scripts/image-base.sh && $(BIN)/loopline containerize --backend buildah; fi

# The image's tests (tests/e2e/test_image.py: size, /predict, SIGTERM stops every worker with
# the log flushed): minutes of builds, so only here, not in `make test`.
test-image: install
	LOOPLINE_IMAGE_TESTS=1 $(BIN)/python -m pytest tests/e2e/test_image.py -v -s

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache
