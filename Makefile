# Two commands matter: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench install migration clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Set up and run everything on embedded defaults: SQLite, no broker server, the sandbox, demo data.
run: $(STAMP)
	$(BIN)/outreach db upgrade
	$(BIN)/outreach demo seed
	$(BIN)/outreach users ensure-admin
	$(BIN)/outreach run

## Set up and pass the whole suite: lint, types, tests on SQLite and PostgreSQL, Redis, Celery.
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy outreach tasks worker.py scheduler.py tests bench

pytest: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-axe
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

## Only until the first release: rebuild the initial migration from the models.
migration: $(STAMP)
	$(BIN)/python -m outreach.migrations.regenerate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
