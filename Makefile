# `make test` and `make demo` work from a clean clone with only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := $(wildcard gateway_async tests benchmarks examples)

.PHONY: test lint typecheck pytest soak bench clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

typecheck: $(STAMP)
	$(BIN)/mypy --strict gateway_async

pytest: $(STAMP)
	$(BIN)/python -m pytest -W error -q

test: lint typecheck pytest

# The fault soak at full size (`make test` runs it with GATEWAY_SOAK_N=500).
soak: $(STAMP)
	GATEWAY_SOAK_N=20000 $(BIN)/python -m pytest -W error -q -m soak tests/soak

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run_all

demo: $(STAMP)
	$(BIN)/gateway-async demo --media examples/media

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
