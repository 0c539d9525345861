"""The Celery threads pool (CONQUER_WORKER_POOL=threads): what it runs, and what it gives up.

One real `celery worker` whose pool is 2 threads of its one process, on the session's Redis under a
key prefix of its own (the session's stack is never touched). Celery enforces time limits only in
the prefork (and gevent) pool, and a revoke's terminate is not implemented for the threads pool: a
thread can be neither interrupted nor killed from outside. So under the threads pool

- a `stuck` chunk (and a `slow` one) runs to its own end, past the soft and the hard limit; once it has
  run longer than the visibility timeout, Redis hands its message to another thread as well, which
  runs it again — the job still ends with the exact answer, the chunk counted once;
- `conquer cancel` marks the job and revokes what has not started, but a running chunk runs to its
  end (the worker logs Celery's NotImplementedError for the terminate it cannot do).

Each test asserts the opposite of what the prefork pool does in tests/drills/test_worker_faults.py.
Every wait is a poll with a deadline; "running" is the job store's count of started chunks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import SESSION_PROCESSES, Stack, conquer, expire_own_keys, one_line, wait_until
from workers.celery.brokers.redis import redis_client
from workers.celery.client import Client
from workers.celery.jobstore import CANCELLED, SUCCESS
from workers.celery.localstack import local_stack
from workers.celery.settings import HARD_LIMIT_MARGIN_S, Settings

THREADS = 2
#: Short limits, so a chunk outlives both in seconds: soft 1 s, hard 1 + 3 = 4 s; the visibility
#: timeout must exceed the hard limit (Settings checks), 5 s is the least it allows.
LIMITS: dict[str, Any] = {"chunk_time_limit": 1, "visibility_timeout": HARD_LIMIT_MARGIN_S + 2}
#: How long the stuck chunk stalls: past the hard limit (4 s) and the visibility timeout (5 s).
STUCK_S = 7


@pytest.fixture(scope="module")
def threads_stack(celery_stack: Stack) -> Iterator[Stack]:
    """One worker with a threads pool of THREADS threads; it outlives each test of the module."""
    own = Settings(
        key_prefix=f"conquer-threads-{secrets.token_hex(4)}",
        worker_pool="threads",
        worker_concurrency=THREADS,
        **LIMITS,
    ).with_broker(celery_stack.stack.settings.broker_url)
    with local_stack(own, workers=1) as stack:
        pids = {process.pid for process in stack.workers}
        SESSION_PROCESSES.update(pids)
        connection = redis_client(stack.settings.result_backend)
        try:
            yield Stack(stack, Client(stack.app, stack.settings), connection, stack.settings.to_env())
        finally:
            SESSION_PROCESSES.difference_update(pids)
            expire_own_keys(connection, stack.settings.key_prefix)
            connection.close()


def worker_pid(stack: Stack) -> int:
    (worker,) = stack.stack.workers  # the launcher execs the worker: its Popen's pid is the worker's
    return worker.pid


def runs_of(stack: Stack, job_id: str, index: int) -> list[dict[str, Any]]:
    """Every finished run of chunk `index` (the store keeps each run's record, in order)."""
    return [record for record in stack.client.store.records(job_id) if record["index"] == index]


def test_one_worker_runs_the_chord_in_two_threads_of_its_one_process(threads_stack: Stack) -> None:
    (info,) = threads_stack.client.workers(timeout=5)
    # Celery names the pool "thread"; it has threads, no pool processes.
    assert (info.pool, info.concurrency, info.processes) == ("thread", THREADS, [])
    # Chunks that wait (download) overlap whatever the build: two threads must both be busy.
    job = Job("download", 16, 8, latency=0.1)
    status = threads_stack.client.wait(threads_stack.client.submit(job), 60)
    assert (status.state, status.value) == (SUCCESS, check(job)), status.error
    records = threads_stack.client.records(status.job_id)
    assert {record["pid"] for record in records} == {worker_pid(threads_stack)}
    assert len({record["thread"] for record in records}) == THREADS


def test_a_stuck_chunk_outlives_both_time_limits_and_runs_again_past_the_visibility_timeout(
    threads_stack: Stack,
) -> None:
    """Under prefork the hard limit kills the pool process at 4 s and the job fails; here nothing
    stops the thread: the chunk ends after its full stall, is handed to the other thread once the
    visibility timeout has passed, and the job ends with the exact answer."""
    settings = threads_stack.stack.settings
    job = Job("sum", 1000, 4, fault=f"stuck:{STUCK_S}@600")  # chunk 2 holds item 600
    job_id = threads_stack.client.submit(job)
    status = threads_stack.client.wait(job_id, 60)
    assert (status.state, status.value) == (SUCCESS, check(job)), status.error
    wait_until(lambda: len(runs_of(threads_stack, job_id, 2)) == 2, 60, "chunk 2 never ran a second time")
    first, second = runs_of(threads_stack, job_id, 2)
    assert first["ended"] - first["started"] >= STUCK_S > settings.hard_time_limit  # never cut short
    # Redelivered while the first run still held it, to the other thread of the same live process.
    assert second["started"] - first["started"] >= settings.visibility_timeout
    assert second["started"] < first["ended"]
    assert first["thread"] != second["thread"]
    assert first["pid"] == second["pid"] == worker_pid(threads_stack)
    assert threads_stack.stack.alive_workers() == 1
    final = threads_stack.client.status(job_id)
    assert (final.done, final.combines, final.attempts) == (job.chunks, 1, job.chunks + 1)  # counted once


def test_cancel_cannot_stop_a_running_chunk_only_what_has_not_started(threads_stack: Stack) -> None:
    """Under prefork `cancel` terminates the running chunks' processes; here the running chunks run
    to their end (and are recorded, the job staying CANCELLED), and nothing else of the job starts."""
    job = Job("download", 48, 6, latency=0.5)  # 6 chunks of 4 s
    job_id = threads_stack.client.submit(job)
    wait_until(lambda: threads_stack.client.status(job_id).attempts == THREADS, 30, "2 chunks never ran")
    cancelled_at = time.time()
    cancelled = conquer("cancel", job_id, env=threads_stack.env)
    assert cancelled.returncode == ExitCode.OK, cancelled.stderr
    assert cancelled.stdout == f"job {job_id} cancelled: 6 of 6 chunk(s) revoked\n"
    # Not stopped: both running chunks end after the cancel, with their full 4 s behind them.
    wait_until(
        lambda: threads_stack.client.status(job_id).done == THREADS, 30, "the running chunks never ended"
    )
    records = threads_stack.client.records(job_id)
    assert len(records) == THREADS
    assert all(record["ended"] > cancelled_at for record in records), records
    assert all(record["ended"] - record["started"] >= 4 for record in records), records
    final = threads_stack.client.status(job_id)
    assert final.state == CANCELLED
    assert (final.attempts, final.combines) == (THREADS, 0)  # nothing started after the cancel
    waiting = conquer("result", job_id, "--timeout", "10", env=threads_stack.env)
    assert waiting.returncode == ExitCode.CANCELLED, waiting.stderr
    # The worker lived on, and takes the next job.
    assert threads_stack.stack.alive_workers() == 1
    after = Job("sum", 10_000, 4)
    status = threads_stack.client.wait(threads_stack.client.submit(after), 30)
    assert (status.state, status.value) == (SUCCESS, check(after)), status.error
    assert {record["pid"] for record in threads_stack.client.records(status.job_id)} == {
        worker_pid(threads_stack)
    }


def test_an_unknown_pool_is_refused_in_one_line_naming_the_threads_pool() -> None:
    bad = conquer("run", "sum", "10", "--on", "celery", env={"CONQUER_WORKER_POOL": "greenlets"})
    assert bad.returncode == ExitCode.USAGE, bad.stderr
    assert "CONQUER_WORKER_POOL must be one of prefork, threads, solo, got 'greenlets'" in one_line(
        bad.stderr
    )
