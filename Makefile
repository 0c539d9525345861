# The two set-up commands of the README, and the rest. Everything runs from a virtualenv in .venv that
# the first target to need it creates, so a fresh clone needs only Python >= 3.11 and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when the project's metadata changes.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# `make run`: the main job, every way, side by side. N is chosen to take about a minute on 2 cores.
RUN_N ?= 100_000_000

.PHONY: all install run test lint typecheck unit audit bench compose-test clean

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
