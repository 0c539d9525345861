# The two set-up commands of the README, and the rest. Everything runs from a virtualenv in .venv that
# the first target to need it creates, so a fresh clone needs only Python >= 3.11 and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when the project's metadata changes.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# `make run`: the main job, every way, side by side. N is chosen to take about a minute on 2 cores.
RUN_N ?= 100_000_000

.PHONY: all install run test lint typecheck unit soak audit bench compose-test clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("conquer needs Python >= 3.11, this is " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	# setuptools too: a Python 3.11 venv is seeded with setuptools 65.5.0, which has known advisories.
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/conquer compare sum $(RUN_N)

# `make bench`: the full benchmark, written to docs/bench (about a quarter of an hour on 2 cores: run it
# on a quiet machine; `conquer bench --quick` is the 2-minute version).
bench: $(STAMP)
	$(BIN)/conquer bench --out docs/bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# `make soak`: the test suite K times in a row (K=5 unless given), to find the tests that fail by chance.
# Every run goes to its end and the next one starts whatever failed; then one line per run and the
# names of the tests that failed (with how many runs each failed in), and a non-zero exit if any run
# failed. Lint and mypy are left out: they cannot flake. SOAK_ARGS narrows it, as pytest arguments:
#   make soak K=1 SOAK_ARGS='tests/tasks -k settings'
K ?= 5
SOAK_ARGS ?=
SOAK_LOGS ?= $(VENV)/soak
soak: $(STAMP)
	@rm -rf $(SOAK_LOGS) && mkdir -p $(SOAK_LOGS); failed=0; \
	for run in $$(seq 1 $(K)); do \
		log=$(SOAK_LOGS)/run-$$run.log; \
		$(BIN)/pytest $(SOAK_ARGS) >$$log 2>&1; status=$$?; \
		if [ $$status -eq 0 ]; then verdict=passed; else verdict="FAILED (exit $$status)"; failed=$$((failed + 1)); fi; \
		echo "soak run $$run/$(K): $$verdict — $$(tail -n 1 $$log | sed 's/=//g; s/^ *//; s/ *$$//') — $$log"; \
	done; \
	if [ $$failed -eq 0 ]; then echo "soak: all $(K) run(s) passed"; exit 0; fi; \
	echo "soak: $$failed of $(K) run(s) failed; runs each test failed in:"; \
	cat $(SOAK_LOGS)/run-*.log | grep -E '^(FAILED|ERROR) ' | sed 's/ - .*//' | sort | uniq -c | sort -rn; \
	exit 1

# `make audit`: every distribution installed in the virtualenv (the project itself aside: it is
# installed editable and is not on PyPI) checked against PyPI's advisory data; needs the network. Fails
# on a known vulnerability, and on any distribution that could not be checked: pip-audit skips what an
# index cannot tell it about, and .ci/audit_gaps.py asks the index's newest-release page for those.
AUDIT_REPORT := $(VENV)/pip-audit.json
audit: $(STAMP)
	rm -f $(AUDIT_REPORT)
	-$(BIN)/pip-audit --skip-editable --progress-spinner off --format json --output $(AUDIT_REPORT)
	$(BIN)/python .ci/audit_gaps.py $(AUDIT_REPORT)

# The README's `docker compose` story on a real engine (tests/compose/compose_up.py). It exits 0 when
# every check passed, 1 when one failed, 77 when it skipped, with one line saying why (no
# Docker-compatible engine, or Compose older than 2.24): a skip never passes for a success, and make
# stops on it with `Error 77`.
compose-test: $(STAMP)
	$(BIN)/python -m tests.compose.compose_up

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

# `make freethreaded`: a free-threaded CPython and a second virtualenv of it, $(FT_VENV), with conquer
# installed. FT_PYTHON=python3.14t (any 3.13t/3.14t) uses yours; without it, CPython is built once from
# Debian's source package (as root, about 3 minutes) into ~/.cache/conquer and reused. Neither `run`
# nor `test` needs it. The steps and exit codes: .ci/freethreaded.py.
.PHONY: freethreaded test-ft clean-ft
FT_VENV ?= .venv-ft
freethreaded:
	$(PYTHON) .ci/freethreaded.py --venv $(FT_VENV) $(if $(FT_PYTHON),--python '$(FT_PYTHON)')

# `make test-ft`: the executor matrix, the CLI and the Celery tests again under the free-threaded
# build, with the plugin tests/gil_off.py, which fails the run if the GIL was on at its end (an
# extension module can switch it back on). Not the fuzzed bad input of test_fuzz_cli.py: it is
# refused before any executor runs, by the same code on either build.
FT_TESTS := tests/test_gil_off.py tests/workers/test_executors.py tests/conquer/test_cli.py \
	tests/conquer/test_stack_cli.py tests/workers/test_celery_chord.py \
	tests/workers/test_celery_threads_pool.py tests/conquer/test_up_threads.py \
	tests/demos/test_cpu_vs_io.py tests/demos/test_bank_account_builds.py tests/conquer/test_bench_builds.py
test-ft: freethreaded
	# `python -m pytest`: -p loads the plugin by module name, and -m puts the repository on sys.path.
	$(FT_VENV)/bin/python -m pytest -p tests.gil_off $(FT_TESTS)
	# The chord tests again with the session's workers on the threads pool (2 nodes x 1 thread; the
	# tests that start an embedded stack of their own clear CONQUER_* and keep the default pool).
	CONQUER_WORKER_POOL=threads $(FT_VENV)/bin/python -m pytest -p tests.gil_off tests/workers/test_celery_chord.py

clean: clean-ft
clean-ft:
	rm -rf $(FT_VENV)
