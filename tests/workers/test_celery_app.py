"""The Celery app: the settings the reliability story depends on, and Celery's own CLI against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import Stack, fresh_python
from workers.celery.app import CHUNK_TASK, COMBINE_TASK, make_app
from workers.celery.brokers.redis import RESTORE_INTERVAL_S
from workers.celery.settings import Settings

CELERY = [sys.executable, "-m", "celery", "-A", "tasks"]


def test_importing_tasks_does_not_load_celery_but_celery_finds_the_app_in_it() -> None:
    """`tasks` stays pure (the executors import it); Celery's `-A tasks` lookup, which imports the
    entry module `tasks.celery` by name, ends at the app of `workers.celery.app`."""
    probe = (
        "import sys, tasks; before = 'celery' in sys.modules; "
        "from celery.app.utils import find_app; from workers.celery.app import app; "
        "print(before, type(find_app('tasks')).__name__, find_app('tasks') is app)"
    )
    assert fresh_python(probe).split() == ["False", "Celery", "True"]


def test_the_app_accepts_json_only_and_acknowledges_chunks_late() -> None:
    app = make_app(Settings(key_prefix="t"))
    conf = app.conf
    assert conf.accept_content == conf.result_accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_expires > 0
    assert conf.broker_connection_retry_on_startup
    assert conf.worker_send_task_events
    chunk = app.tasks[CHUNK_TASK]
    assert chunk.acks_late
    assert chunk.reject_on_worker_lost
    assert chunk.soft_time_limit < chunk.time_limit
    assert COMBINE_TASK in app.tasks
    app.close()


def test_the_visibility_timeout_is_set_everywhere_celery_reads_it() -> None:
    settings = Settings(visibility_timeout=33, chunk_time_limit=20, key_prefix="iso")
    conf = make_app(settings).conf
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["visibility_timeout"] == 33
        assert options["unacked_restore_interval"] == RESTORE_INTERVAL_S
        assert options["unacked_restore_throttle"] == 1
        assert options["global_keyprefix"] == "iso:"
    assert conf.visibility_timeout == 33


def celery(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CELERY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **stack.env},
        check=False,
    )


def test_celery_inspect_ping_reaches_every_worker(celery_stack: Stack) -> None:
    result = celery(celery_stack, "inspect", "ping", "--timeout", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == set(celery_stack.stack.worker_names)


def test_celery_call_runs_a_chunk_task(celery_stack: Stack) -> None:
    message = {"kind": "sum", "index": 0, "start": 1, "stop": 101}
    sent = celery(celery_stack, "call", CHUNK_TASK, "--args", json.dumps([message]))
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    result = celery_stack.client.app.AsyncResult(task_id)
    deadline = time.monotonic() + 30
    while not result.ready():
        if time.monotonic() > deadline:
            pytest.fail(f"task {task_id} did not finish in 30 s")
        time.sleep(0.05)
    assert result.get(timeout=1) == 5050
    result.forget()


def test_two_apps_in_one_process_keep_their_own_time_limits() -> None:
    """Celery's shared tasks would give the second app the first one's limits, and a client stamps
    its limits on every message it sends (the worker obeys those over its own)."""
    short = make_app(Settings(chunk_time_limit=2, visibility_timeout=8, key_prefix="a"))
    default = make_app(Settings(key_prefix="b"))
    assert (short.tasks[CHUNK_TASK].soft_time_limit, short.tasks[CHUNK_TASK].time_limit) == (2, 5)
    assert (default.tasks[CHUNK_TASK].soft_time_limit, default.tasks[CHUNK_TASK].time_limit) == (15, 18)
    short.close()
    default.close()


@pytest.mark.parametrize(
    ("parent", "status"),
    [("os.getppid()", 0), ("os.getppid() + 1_000_000", 1), ("os.getpid()", 0)],
    ids=["pool process of a live worker", "orphaned pool process", "solo worker itself"],
)
def test_a_pool_process_whose_worker_died_before_its_initializer_exits(parent: str, status: int) -> None:
    """The race `_pool_process_dies_with_its_worker` closes: the worker recorded as its parent is not
    its parent any more (it died and the process was reparented), so it exits instead of living on.
    A pool process of a live worker stays, and so does a solo worker, which gets the same signal in
    its own process (tests/workers/test_celery_pools.py runs one)."""
    code = (
        "import os, workers.celery.app as app; "
        f"app._worker_pid = {parent}; app._pool_process_dies_with_its_worker(); print('stayed')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == status, result.stderr
    assert result.stdout == ("stayed\n" if status == 0 else "")
