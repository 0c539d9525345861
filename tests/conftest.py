"""Fixtures every test shares: the real `conquer` entry point, and a check that no test leaves a child
process or thread behind."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

#: The console script pip installed next to this interpreter: the CLI exactly as users run it.
CONQUER = str(Path(sys.executable).with_name("conquer"))

#: Helper processes multiprocessing starts once per interpreter and keeps until it exits (the
#: forkserver, and the resource tracker behind spawn/forkserver locks). They run no chunks; every
#: worker process must be gone after a run.
INTERPRETER_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def conquer(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `conquer ARGS` as a user would; fail the test if it takes longer than `timeout`."""
    return subprocess.run(
        [CONQUER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def workers_alive() -> list[psutil.Process]:
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if not any(helper in command for helper in INTERPRETER_HELPERS):
            alive.append(child)
    return alive


def wait_until(predicate: object, timeout: float, message: str, interval: float = 0.05) -> None:
    """Poll `predicate()` until true; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    threads_before = set(threading.enumerate())
    children_before = {child.pid for child in workers_alive()}
    yield
    # A worker that was just told to exit may need a moment to be reaped; 5 s is far beyond that.
    wait_until(
        lambda: not [c for c in workers_alive() if c.pid not in children_before],
        5,
        "child processes left behind",
    )
    wait_until(lambda: not set(threading.enumerate()) - threads_before, 5, "threads left behind")
