# The two set-up commands of the README (`make demo`, `make test`) work on a fresh machine with Python 3.11.
# `make test-fast` is the developer's quick tier (unit tests only); `make test-production` runs the platform on
# Debian's Redis, Postgres and Prometheus; `make lint` is what CI checks.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-packages demo test test-retry test-fast test-production lint down bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'

demo: install
	$(BIN)/asgard demo

# Debian's redis-server, postgresql, prometheus and chromium, installed if missing (root; see .ci/system-packages)
system-packages:
	.ci/system-packages

test: install system-packages
	$(BIN)/python -m pytest tests

# reruns each failed test once, reported as R: for hunting a flake, never the default
test-retry: install system-packages
	$(BIN)/python -m pytest tests --reruns 1 --reruns-delay 5

test-production: install system-packages
	$(BIN)/python -m pytest tests/production -q

test-fast: install
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check asgard_ray jobs
	$(BIN)/ruff format --check asgard_ray jobs
	$(BIN)/mypy

down:
	$(BIN)/asgard down
