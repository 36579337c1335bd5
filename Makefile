# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint stack-up stack-down stack-status docker-check-deps

$(VENV)/.installed: pyproject.toml
	sh scripts/bootstrap-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The main job: the local stack with the demo database and a few thousand demo rows (seeded
# before the Debezium source starts, so its initial snapshot holds them), then `lethe demo`:
# the worker enforcing on an accelerated clock (a year a minute) and a live summary until
# Ctrl-C (the stack stays up).
demo: venv
	$(BIN)/lethe validate
	$(BIN)/lethe stack up --only postgres
	$(BIN)/lethe demo seed
	$(BIN)/lethe stack up
	$(BIN)/lethe demo --no-seed

# Everything CI checks: lint and types, then every test against the real local stack.
test: lint docker-check-deps stack-up
	$(BIN)/pytest

# The local real stack (Kafka, Connect + Debezium, PostgreSQL, Prometheus); see `lethe stack -h`.
stack-up: venv
	$(BIN)/lethe stack up

stack-down: venv
	$(BIN)/lethe stack down

stack-status: venv
	$(BIN)/lethe stack status

# The Compose CLI that tests/unit/test_docker_compose.py validates docker/compose.yaml with.
docker-check-deps:
	sh scripts/install-compose-validator.sh
