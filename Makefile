# Two entry points for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,postgres,redis,s3,llm,otel
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install venv browser run test lint check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) browser

# The Python environment alone: what the container image installs (see Dockerfile).
venv: $(STAMP)

# Debian's Chromium for the browser tests (never a downloaded browser). Installed when
# missing and apt-get can run as root; otherwise the browser tests say why they skip.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || \
	  echo "could not install chromium: the browser tests will be skipped"

run: install
	$(BIN)/openmaas serve --demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

test: install lint
	$(BIN)/pytest

check: test

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
