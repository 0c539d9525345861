"""`conquer up` with the threads pool says what it started: threads of one worker process, not processes.

One meaning per word (issue 15): `--processes` sizes the pool; with CONQUER_WORKER_POOL=threads that
pool is threads of the worker's one process, and the banner, `conquer workers` and the worker itself
must all say so.
"""

from __future__ import annotations

import re

import psutil
import pytest

from conquer import machine
from conquer.exitcodes import ExitCode
from conquer.up_cli import threads_note
from tests.conftest import conquer, ctrl_c
from tests.conquer.test_stack_cli import clean_env, live_workers, read_until, start


@pytest.mark.usefixtures("embedded_redis")
def test_up_with_the_threads_pool_says_it_started_threads_and_starts_exactly_that() -> None:
    process = start(
        "up",
        "--workers",
        "1",
        "--processes",
        "2",
        "--no-flower",
        env=clean_env(CONQUER_WORKER_POOL="threads"),
    )
    try:
        banner = read_until(process, "Press Ctrl-C", 90)
        assert (
            "workers  1 (--workers), each with a threads pool of 2 thread(s) in its one process "
            "(--processes, as threads: CONQUER_WORKER_POOL=threads)" in banner
        ), banner
        assert "process(es)" not in banner
        # What the threads can do here: the workers run under this interpreter, GIL and all.
        assert f"  threads  {threads_note()}" in banner
        on = "the GIL is on here" in banner
        assert on is machine.gil_enabled()
        broker = re.search(r"export CELERY_BROKER_URL=(\S+)", banner)
        assert broker, banner
        (worker,) = live_workers(broker.group(1))
        assert (worker["pool"], worker["concurrency"], worker["processes"]) == ("thread", 2, [])
        # The worker is one process, with no pool processes (its threads start with the first chunks).
        (node,) = [p for p in psutil.Process(process.pid).children() if worker["name"] in p.cmdline()]
        assert node.children() == []
        listed = conquer("workers", "--timeout", "2", env={"CELERY_BROKER_URL": broker.group(1)})
        assert listed.returncode == ExitCode.OK, listed.stderr
        assert f"{worker['name']}  thread pool, 2 thread(s), 0 task(s) run" in listed.stdout
    finally:
        _, stderr = ctrl_c(process, timeout=60)
    assert process.returncode == ExitCode.OK, stderr
