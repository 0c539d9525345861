"""A pytest plugin for the free-threaded run: the run fails unless the GIL was still off at its end.

On a free-threaded build, importing an extension module that has not declared that it runs safely
without the GIL (the Py_mod_gil slot) switches the GIL on for the rest of the process, with nothing
but a RuntimeWarning. A run that then passes has tested the GIL build once more, not free-threading.
Once switched on by an import, the GIL stays on, so its state at the end stands for the whole run.
The processes the tests start (the CLI, Celery workers) are checked by tests/test_gil_off.py.

Usage::

    .venv-ft/bin/python -m pytest -p tests.gil_off tests/workers/test_executors.py
    make test-ft    # the executor matrix, the CLI and the Celery chord tests, with this plugin
"""

from __future__ import annotations

import platform
import sys

import pytest

from conquer.machine import free_threaded_build, gil_enabled


def pytest_configure(config: pytest.Config) -> None:
    if not free_threaded_build():
        raise pytest.UsageError(
            f"-p tests.gil_off checks a free-threaded run, and {sys.executable} is Python "
            f"{platform.python_version()} with the GIL: run make test-ft"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if gil_enabled():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    version = platform.python_version()
    if gil_enabled():
        terminalreporter.write_line(
            f"FAILED: the GIL was ON at the end of this run on free-threaded Python {version}: an "
            "extension module switched it on (-W error::RuntimeWarning names it), or PYTHON_GIL=1 / "
            "-X gil=1 did, so what passed here ran with the GIL",
            red=True,
            bold=True,
        )
    else:
        terminalreporter.write_line(
            f"the GIL stayed off for the whole run (free-threaded Python {version})", green=True
        )
