# The two set-up commands of the README. Both work on a fresh machine with Python 3.11.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test down bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'

demo: install
	$(BIN)/asgard demo

test: install
	$(BIN)/python -m pytest tests

down:
	$(BIN)/asgard down
