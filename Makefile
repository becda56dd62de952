# Everything a fresh machine needs: a venv, the Python packages and the Kafka jars (via mvn).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench setup kafka-jars clean

setup: $(STAMP) kafka-jars

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || (echo "llmpulse needs Python 3.11+" && exit 1)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/python -c 'from streams.local_kafka import fetch_jars; print("kafka jars in", fetch_jars())'

## The main job on embedded defaults: local Kafka, a worker on embedded ClickHouse, sample traffic.
demo: setup
	$(BIN)/llmpulse demo $(ARGS)

## The whole test suite: lint, types, unit and integration tests (a real broker is started and stopped).
test: setup lint typecheck
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check streams detectors schemas alerting tests
	$(BIN)/ruff format --check streams detectors schemas alerting tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit detectors

integration: setup
	$(BIN)/python -m pytest -q tests/integration

bench: setup
	$(BIN)/python -m tests.bench_ingest $(ARGS)

clean:
	rm -rf $(VENV) .data build *.egg-info
