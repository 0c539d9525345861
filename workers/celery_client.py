"""Talking to a running Celery stack: submit a job, watch it, fetch its answer, cancel it, list workers.

This is the client half of the broker executor and of `conquer submit/status/result/cancel/workers`.
A job id is 16 hex digits; its chunk tasks are `{id}-{index}` and its combine task is `{id}` itself,
so everything about a job is found from its id alone — no list of task ids is stored anywhere. Every
wait has a deadline, and progress is read in one Redis round trip per poll (`tasks.progress`).

Usage::

    client = Client.connect(settings())
    job_id = client.submit(Job("sum", 10**8, 16))
    status = client.wait(job_id, timeout=60)
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.job import Job, split
from tasks.progress import JOB_ID, JobStatus, JobStore, redis_client
from tasks.settings import Settings, mask
from workers.base import BrokerUnreachable, ExecutorError

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

#: How often a waiting client reads a job's progress. The answer itself arrives at once (Redis
#: pub/sub wakes the client); this only paces the progress bar and the checks for failure.
POLL_S = 0.1

#: An unreachable broker is reported within this many seconds (connect timeouts, DNS included).
REACH_TIMEOUT_S = 4.0


class UnknownJob(ExecutorError):
    """No job with that id is known (never submitted, or its records expired)."""


class JobTimeout(ExecutorError):
    """The job did not finish by the deadline; it may still be running."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker, as it answered `inspect stats` and `inspect active`."""

    name: str
    pool: str
    processes: list[int]
    concurrency: int
    #: Tasks this worker has run since it started, by task name.
    total: dict[str, int] = field(default_factory=dict)
    #: The chunks running right now: (job id, human description).
    active: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pool": self.pool,
            "concurrency": self.concurrency,
            "processes": self.processes,
            "total": self.total,
            "active": [{"job": job, "chunk": chunk} for job, chunk in self.active],
        }


def new_job_id() -> str:
    return secrets.token_hex(8)


def chunk_task_id(job_id: str, index: int) -> str:
    return f"{job_id}-{index}"


def check_job_id(job_id: str) -> str:
    """The id, or ValueError: refused before anything is asked of Redis."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"{job_id!r} is not a job id (16 hex digits, as `conquer submit` prints)")
    return job_id


class Client:
    """A connection to one stack: its Celery app (for sending and control) and its job store."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        from tasks.celery_app import job_store

        self.app = app
        self.settings = settings
        self.store: JobStore = job_store(app)

    @classmethod
    def connect(cls, settings: Settings) -> Client:
        """A client for `settings`, after checking (within REACH_TIMEOUT_S) that Redis answers."""
        reach(settings)
        from tasks.celery_app import make_app

        return cls(make_app(settings), settings)

    def close(self) -> None:
        close_app(self.app)

    # ------------------------------------------------------------------------------------- submit

    def submit(self, job: Job) -> str:
        """Send the job's chord and return its id at once. Messages carry ranges, never data."""
        from celery import chord
        from kombu.exceptions import OperationalError
        from redis.exceptions import RedisError

        from tasks.celery_app import CHUNK_TASK, COMBINE_TASK

        job_id = new_job_id()
        self.store.create(job_id, job)
        header = [
            self.app.signature(
                CHUNK_TASK,
                (chunk.to_message(), job_id),
                immutable=True,
                task_id=chunk_task_id(job_id, chunk.index),
                # The chord collects the partials itself; storing each one again as a task result
                # (and subscribing to it) would double the Redis work per chunk for nothing.
                ignore_result=True,
                # What Flower and the logs show, instead of Celery's repr of the arguments.
                argsrepr=f"{job.kind} {chunk.describe()} of job {job_id}",
            )
            for chunk in split(job)
        ]
        body = self.app.signature(
            COMBINE_TASK, (job.kind, job_id), task_id=job_id, ignore_result=False, argsrepr=job.describe()
        )
        try:
            result = chord(header, body).apply_async()
        except (OperationalError, RedisError, OSError) as error:
            # Whatever part of the chord was sent is cancelled, so nothing half-submitted runs.
            self._abandon(job_id, job)
            raise BrokerUnreachable(
                f"sending job {job_id} to {mask(self.settings.broker_url)} failed: {error}"
            ) from None
        _forget_locally(result)
        return job_id

    def _abandon(self, job_id: str, job: Job) -> None:
        try:
            self.store.abandon(job_id, "the job could not be sent completely")
            self.store.cancel(job_id)
            self.app.control.revoke([chunk_task_id(job_id, i) for i in range(job.chunks)] + [job_id])
        except Exception:  # the broker is gone: the chunks that were sent expire with their keys
            pass

    # --------------------------------------------------------------------------------------- read

    def status(self, job_id: str) -> JobStatus:
        status = self.store.status(job_id)
        if status is None:
            raise UnknownJob(
                f"no job {job_id} at {mask(self.settings.result_backend)} (never submitted, or expired)"
            )
        return status

    def wait(
        self,
        job_id: str,
        timeout: float,
        *,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        on_poll: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Wait until the job is over (succeeded, failed or cancelled) and return its last status.

        `on_record` gets each chunk's record once, as chunks finish; `on_poll` sees every status read
        (and may raise to stop waiting). Raises JobTimeout after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        result = self.app.AsyncResult(job_id)
        seen: set[int] = set()
        read = 0
        try:
            while True:
                status = self.status(job_id)
                if on_record:
                    records = self.store.records(job_id, read)
                    read += len(records)
                    for record in records:
                        if record["index"] not in seen:  # a chunk run twice is reported once
                            seen.add(record["index"])
                            on_record(record)
                if on_poll:
                    on_poll(status)
                if status.over:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout(
                        f"job {job_id} is not done after {timeout:g} s "
                        f"({status.done}/{status.total} chunks); ask later: conquer result {job_id}"
                    )
                _wait_for_result(result, min(POLL_S, remaining))
        finally:
            _forget_locally(result)

    def records(self, job_id: str) -> list[dict[str, Any]]:
        """One record per chunk that ran (the last run of each), in chunk order."""
        latest = {record["index"]: record for record in self.store.records(job_id)}
        return [latest[index] for index in sorted(latest)]

    # ------------------------------------------------------------------------------------- cancel

    def cancel(self, job_id: str) -> tuple[JobStatus, int]:
        """Cancel the job: mark it (chunks that start later skip themselves) and revoke every chunk
        not yet done, stopping those running. Returns the status before and how many were revoked."""
        status = self.status(job_id)
        if status.over:
            return status, 0
        self.store.cancel(job_id)
        pending = [chunk_task_id(job_id, index) for index in self.store.pending(job_id, status.total)]
        # One broadcast for all of them. terminate: a running chunk's pool process is stopped (and
        # replaced), so the workers are free at once; the chunk is acknowledged, not redelivered.
        self.app.control.revoke([*pending, job_id], terminate=True)
        return status, len(pending)

    # ------------------------------------------------------------------------------------ workers

    def workers(self, timeout: float) -> list[WorkerInfo]:
        """Every worker that answers within `timeout` s, with its pool and the chunks it is running."""
        from tasks.celery_app import CHUNK_TASK

        inspect = self.app.control.inspect(timeout=timeout)
        stats: dict[str, Any] = inspect.stats() or {}
        # safe: each task's argsrepr ("sum chunk 3 [..) of job ..."), not its raw arguments.
        active: dict[str, Any] = inspect.active(safe=True) or {}
        found = []
        for name in sorted(stats):
            pool = stats[name].get("pool", {})
            running = [
                (str(task.get("id", "")).rpartition("-")[0], str(task.get("args", "")))
                for task in active.get(name, [])
                if task.get("name") == CHUNK_TASK
            ]
            found.append(
                WorkerInfo(
                    name=name,
                    # "celery.concurrency.prefork:TaskPool" -> "prefork"
                    pool=str(pool.get("implementation", "?")).partition(":")[0].rpartition(".")[2],
                    processes=list(pool.get("processes", [])),
                    concurrency=int(pool.get("max-concurrency", 0) or 0),
                    total=dict(stats[name].get("total", {})),
                    active=running,
                )
            )
        return found


def reach(settings: Settings, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise BrokerUnreachable (naming the URL, password masked) unless the broker and the result
    backend both answer PING within `timeout` seconds in all — slow DNS included."""
    urls = dict.fromkeys((settings.broker_url, settings.result_backend))
    errors: list[str] = []

    def ping() -> None:
        for url in urls:
            client = redis_client(url, timeout=timeout)
            try:
                client.ping()
            except Exception as error:
                errors.append(f"cannot reach Redis at {mask(url)}: {_reason(error)}")
                return
            finally:
                client.close()

    # A daemon thread, so that a resolver stuck past the deadline cannot keep `conquer` waiting.
    probe = threading.Thread(target=ping, name="conquer-reach", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        raise BrokerUnreachable(
            f"cannot reach Redis at {mask(settings.broker_url)}: no answer in {timeout:g} s"
        )
    if errors:
        raise BrokerUnreachable(errors[0])


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].rstrip(".")


def _wait_for_result(result: AsyncResult[Any], timeout: float) -> None:
    """Sleep until the job's combine step stores its result (pub/sub wakes us) or `timeout` passes."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    with suppress(CeleryTimeout):
        result.get(timeout=timeout, propagate=False)


def close_app(app: Celery) -> None:
    """Close a client app for good, before its Redis may go away.

    Sending a group, Celery subscribes to each task's result channel and keeps the subscription until
    that result arrives — which for chunk tasks (ignore_result) it never does; each one is dropped only
    when its AsyncResult is garbage-collected, possibly after Redis stopped, printing a traceback from
    `__del__`. So: close the result consumer's pub/sub connection and forget the subscriptions first.
    """
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None:
        consumer.stop()
        consumer.subscribed_to.clear()
    app.close()


def _forget_locally(result: AsyncResult[Any]) -> None:
    """Drop the client's pub/sub subscription for `result` now, while Redis is certainly still up
    (Celery would otherwise do it whenever the object is garbage-collected)."""
    with suppress(Exception):  # best effort: the subscription dies with the connection anyway
        getattr(result.backend, "remove_pending_result", lambda _result: None)(result)
