# Two entry points for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,postgres,redis,s3,llm,otel,ray
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Real servers the tests talk to, each in a virtual environment of its own (its
# dependencies never meet ours): MLServer for the remote V2 runtime.
PEERS ?= .peers
MLSERVER := mlserver==1.7.1 mlserver-sklearn==1.7.1
MLSERVER_STAMP := $(PEERS)/mlserver/.installed-$(shell echo '$(MLSERVER)' | cksum | cut -d' ' -f1)

.PHONY: install venv browser peers run test lint check clean

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

peers: $(MLSERVER_STAMP)

$(MLSERVER_STAMP):
	test -x $(PEERS)/mlserver/bin/python || $(PYTHON) -m venv $(PEERS)/mlserver
	$(PEERS)/mlserver/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/mlserver/bin/python -m pip install --quiet $(MLSERVER)
	rm -f $(PEERS)/mlserver/.installed-* && touch $(MLSERVER_STAMP)

run: install
	$(BIN)/openmaas serve --demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

test: install lint peers
	$(BIN)/pytest

check: test

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache build *.egg-info src/*.egg-info
