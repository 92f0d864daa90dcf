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

# The fault soak at full size (`make test` runs it with GATEWAY_SOAK_N=500), and the
# interleaving exploration over 5000 seeds (`make test` runs 300).
soak: $(STAMP)
	GATEWAY_SOAK_N=20000 GATEWAY_INTERLEAVE_SEEDS=5000 \
		$(BIN)/python -m pytest -W error -q -m soak tests/soak

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run_all

# The demo needs only the core and [cli]: a small venv of its own (no Ray, moto, mypy...),
# with the dependencies read from pyproject.toml and the package run from the source tree.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DEMO_DEPS := import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(p["dependencies"] + p["optional-dependencies"]["cli"]))

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -c '$(DEMO_DEPS)' > $(DEMO_VENV)/requirements.txt
	$(DEMO_VENV)/bin/python -m pip install --quiet --no-compile --disable-pip-version-check \
		-r $(DEMO_VENV)/requirements.txt
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python -m gateway_async demo --media examples/media

clean:
	rm -rf $(VENV) $(DEMO_VENV) .mypy_cache .pytest_cache .ruff_cache
