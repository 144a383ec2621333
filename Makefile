# Two commands matter: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest pytest-processes pytest-faults pytest-timers pytest-layers pytest-night bench faults install migration clean

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

## Set up and pass the whole suite: lint, types, tests on SQLite and PostgreSQL, Redis, Celery;
## the in-process layers again at 03:00 Pacific, because no test may depend on the hour.
## Four streams side by side: the fault tests, one at a time, on a Redis database of their own;
## the other tests that start processes, one at a time (both mostly wait on their processes);
## lint and types, then the in-process layers by day; and the same layers by night. Then, once
## both process streams are done, the real-timer tests. Each target's output shows when it ends.
test: $(STAMP)
	scripts/ensure-chromium  # the system packages first, one apt at a time
	scripts/ensure-faketime
	$(MAKE) --no-print-directory -j4 --output-sync=target \
		pytest-faults pytest-processes lint typecheck pytest-layers pytest-night pytest-timers XDIST=

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(YIELDING) $(BIN)/mypy outreach tasks worker.py scheduler.py tests bench

LAYERS := tests/unit tests/service tests/web
# Two concurrent pytest sessions must not share a cache file.
PYTEST := $(BIN)/pytest -p no:cacheprovider
# The in-process passes and the type check yield the CPU to the processes the end-to-end tests
# start: beside them, a crisis reply or a delivery those tests wait for within a deadline is
# late only by the machine, not by the other streams. They take what is left, which is plenty.
YIELDING := nice -n 10

# Tests that start processes (tests/e2e), one at a time. The fault tests (half of tests/e2e's
# time) run beside them, each system with its own queues, database and ports, the stream with a
# Redis database of its own (OUTREACH_TEST_REDIS_DB).
FAULT_TESTS := tests/e2e/test_faults.py
pytest-processes: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-axe
	$(PYTEST) tests/e2e $(if $(filter pytest-faults,$(MAKECMDGOALS)),--ignore=$(FAULT_TESTS))

pytest-faults: $(STAMP)
	OUTREACH_TEST_REDIS_DB=$${OUTREACH_TEST_REDIS_DB:-1} $(PYTEST) $(FAULT_TESTS)

# Tests that time things between threads and processes (real_timers), after the streams that
# start processes: beside them they measure the machine's load (a caller of the rate limiter
# woken late takes its slot late), not the code.
pytest-timers: $(STAMP) $(filter pytest-processes pytest-faults,$(MAKECMDGOALS))
	$(PYTEST) -m real_timers $(LAYERS)

# The in-process layers by day (pytest-night: the same at 03:00 Pacific).
pytest-layers: $(STAMP)
	$(YIELDING) $(PYTEST) -m "not real_timers" $(LAYERS)

# The whole suite in one session on two xdist workers (tests/support/scheduling.py): the tests
# that start processes keep one to themselves, the in-process layers take the other.
XDIST := -n 2 --dist loadgroup

pytest: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-axe
	$(BIN)/pytest $(XDIST)

# Debian's libfaketime moves every clock of the test processes to today's 03:00 Pacific.
# The night pass runs the in-process layers (unit, service, web), where services take `now`.
# The end-to-end tests are not repeated: their processes take a clock the settings fix
# (OUTREACH_CLOCK; tests/e2e/test_embedded_run.py runs one at 03:00) and their patients live
# in a zone where it is daytime whenever they run (tests/support/e2e.py, daytime_zone).
# libfaketime moves the monotonic clock too, which breaks timed thread waits: tests that rely
# on them are marked real_timers and run in the daytime pass only.
# CI must have it; elsewhere its absence is said.
pytest-night: $(STAMP)
	scripts/ensure-faketime
	@if command -v faketime >/dev/null; then \
		offset=$$(( $$(TZ=America/Los_Angeles date -d 03:00 +%s) - $$(date +%s) )); \
		case $$offset in -*) ;; *) offset="+$$offset";; esac; \
		echo "pytest with every clock moved by $$offset s, to 03:00 Pacific"; \
		TZ=UTC $(YIELDING) faketime -f "$$offset" $(PYTEST) $(XDIST) -m "not real_timers" $(LAYERS); \
	elif [ -n "$$CI" ]; then echo "faketime is required for the night run in CI" >&2; exit 1; \
	else echo "faketime is not installed: the night run of the tests was skipped" >&2; fi

## Every benchmark: bench/results.json and one table, each figure beside its goal. QUICK=1: under two minutes.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick)

## The fault matrix against real workers, Redis, PostgreSQL and the sandbox: one line per fault.
FAULTS_REPORT := var/faults.jsonl
faults: $(STAMP)
	mkdir -p var && rm -f $(FAULTS_REPORT)
	OUTREACH_FAULTS_REPORT=$(CURDIR)/$(FAULTS_REPORT) OUTREACH_FAULTS_KILLS=$${OUTREACH_FAULTS_KILLS:-20} \
		$(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_faults.py \
		"tests/e2e/test_replies.py::test_opt_out_during_sending_means_nothing_accepted_after_it_was_stored"; \
		status=$$?; $(BIN)/python -m tests.support.faults $(FAULTS_REPORT) || status=1; exit $$status

## Only until the first release: rebuild the initial migration from the models.
migration: $(STAMP)
	$(BIN)/python -m outreach.migrations.regenerate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
