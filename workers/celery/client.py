"""Talking to a running Celery stack: submit a job, watch it, fetch its answer, cancel it, list workers.

This is the client half of the broker executor and of `conquer submit/status/result/cancel/workers`.
A job id is 16 hex digits; its chunk tasks are `{id}-{index}` and its combine task is `{id}` itself,
so everything about a job is found from its id alone — no list of task ids is stored anywhere. Every
wait has a deadline, and a job's progress is read from the job store (`workers.celery.jobstore`) in one
Redis round trip per poll.

Usage::

    client = Client.connect(settings())
    job_id = client.submit(Job("sum", 10**8, 16))
    status = client.wait(job_id, timeout=60)
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from tasks.job import Job, split
from workers.base import BrokerUnreachable, ExecutorError
from workers.celery import brokers, consumers, results
from workers.celery.brokers import redis
from workers.celery.jobstore import JOB_ID, JobStatus, JobStore
from workers.celery.settings import ENV_BROKER_CA_FILE, Settings, mask

if TYPE_CHECKING:
    from celery import Celery

#: How often a waiting client reads a job's progress. The answer itself arrives at once (Redis
#: pub/sub wakes the client); this only paces the progress bar and the checks for failure.
POLL_S = 0.1

#: An unreachable broker is reported within this many seconds (connect timeouts, DNS included).
REACH_TIMEOUT_S = 4.0

#: While Redis does not answer, a waiting client asks again this often (until its deadline).
RETRY_S = 0.5

#: How often a waiting client also asks whether Celery failed the job's chord (`Client.status`).
CHORD_CHECK_S = 1.0

#: How long a client whose job could not be sent keeps trying to mark it failed.
ABANDON_S = 3.0

#: What `status` says of a job whose sending failed (all or nothing: nothing of it was queued).
NOT_SENT = "the job could not be sent: none of its chunks was queued"


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
    """A connection to one stack: its Celery app (for sending and control), its broker and its job
    store (in the result backend's Redis)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        from workers.celery.app import job_store

        self.app = app
        self.settings = settings
        self.broker = brokers.for_url(settings.broker_url)
        self.store: JobStore = job_store(app)

    @classmethod
    def connect(cls, settings: Settings) -> Client:
        """A client for `settings`, after checking (within REACH_TIMEOUT_S) that the broker and the
        result backend answer."""
        reach(settings)
        from workers.celery.app import make_app

        app = make_app(settings)
        app.amqp.Connection = _fail_fast_connection()
        return cls(app, settings)

    def close(self) -> None:
        results.close_app(self.app)

    # ------------------------------------------------------------------------------------- submit

    def submit(self, job: Job) -> str:
        """Send the job's chord and return its id at once. Messages carry ranges, never data.

        All or nothing: the chunk messages reach the broker at once (Redis: in one MULTI/EXEC;
        RabbitMQ: in one AMQP transaction), so a broker that fails during the send (connection lost,
        out of memory) leaves none of them queued — never part of a job whose chord could not
        complete. The job is then marked failed (BrokerUnreachable is raised).
        """
        from celery import chord

        from workers.celery.app import CHUNK_TASK, COMBINE_TASK

        job_id = new_job_id()
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
        url = mask(self.settings.broker_url)
        try:
            self.store.create(job_id, job)
        except redis.errors() as error:
            raise BrokerUnreachable(
                # The job store is in the result backend, which is not the broker on RabbitMQ.
                f"recording job {job_id} at {mask(self.settings.result_backend)} failed: "
                f"{_reason(error)}; nothing was sent"
            ) from None
        try:
            with self.broker.all_or_nothing(self.app):
                result = chord(header, body).apply_async()
        # The broker's errors, and the result backend's (sending a chord also writes there).
        except (*self.broker.errors(), *redis.errors()) as error:
            self._abandon(job_id)
            raise BrokerUnreachable(
                # kombu's batch error only says delivery is uncertain; its cause says why.
                f"sending job {job_id} to {url} failed: {_reason(error.__cause__ or error)}; "
                "none of its chunks will run"
            ) from None
        results.forget_locally(result)
        return job_id

    def _abandon(self, job_id: str) -> None:
        """Mark a job that could not be sent as failed, and cancelled: if its transaction ran after all
        (EXEC executed, its reply lost), its chunks then skip themselves. Redis may be away for a moment:
        keep trying for ABANDON_S. A Redis that refuses writes (out of memory) still allows deletes: the
        job's record goes, and `status` says no such job was submitted."""
        from redis.exceptions import ResponseError

        deadline = time.monotonic() + ABANDON_S
        while True:
            try:
                self.store.abandon(job_id, NOT_SENT)
                self.store.cancel(job_id)
                return
            except ResponseError:
                with suppress(*redis.errors()):
                    self.store.client.delete(*self.store.keys(job_id))
                return
            except redis.errors():
                if time.monotonic() > deadline:
                    return  # no chunk was queued; the record expires with its TTL
                time.sleep(RETRY_S)

    # --------------------------------------------------------------------------------------- read

    def status(self, job_id: str, *, chord: bool = True) -> JobStatus:
        """The job's status; with `chord`, a job not yet over is also looked up in Celery's results."""
        with self._reading():
            status = self.store.status(job_id)
            if status is not None and chord and not status.over:
                status = self._with_chord_failure(status)
        if status is None:
            raise UnknownJob(
                f"no job {job_id} at {mask(self.settings.result_backend)} (never submitted, or expired)"
            )
        return status

    def _with_chord_failure(self, status: JobStatus) -> JobStatus:
        """`status`, failed if Celery failed the job's chord where no chunk could record it.

        A chunk records its own exceptions; but one killed at its hard time limit, or whose failure
        Celery stored while the job store could not be written (Redis was away), fails the chord
        without a trace in the job store. The combine step then never runs, and the job would
        look RUNNING until its keys expire."""
        raw = self.store.client.get(results.result_key(self.app, status.job_id))
        meta = json.loads(raw) if raw else {}
        if meta.get("status") != "FAILURE":
            return status
        error = meta.get("result") or {}
        message = error.get("exc_message") or []
        text = " ".join(str(part) for part in message) if isinstance(message, list) else str(message)
        return dataclasses.replace(
            status, failure=("", f"the chord failed: {error.get('exc_type', 'error')}: {text}")
        )

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

        A broker that goes away meanwhile is asked again every RETRY_S until the deadline; if it still
        does not answer then, BrokerUnreachable says so (the job may still finish: its messages and
        progress are in Redis).
        """
        deadline = time.monotonic() + timeout
        chord_checked = time.monotonic()
        wake = results.Wake(self.store.client, results.result_key(self.app, job_id))
        seen: set[int] = set()
        read = 0
        try:
            while True:
                lost: BrokerUnreachable | None = None
                try:
                    # Celery's side of the job once a second: one round trip per poll stays the rule.
                    chord = time.monotonic() - chord_checked >= CHORD_CHECK_S
                    status = self.status(job_id, chord=chord)
                    chord_checked = time.monotonic() if chord else chord_checked
                    records = self._records_from(job_id, read) if on_record else []
                except BrokerUnreachable as error:
                    lost = error
                else:
                    read += len(records)
                    for record in records:
                        if on_record and record["index"] not in seen:  # a chunk run twice is reported once
                            seen.add(record["index"])
                            on_record(record)
                    if on_poll:
                        on_poll(status)
                    if status.over:
                        return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if lost:
                        raise BrokerUnreachable(
                            f"{lost} (gave up waiting for job {job_id} after {timeout:g} s; "
                            f"ask later: conquer result {job_id})"
                        )
                    raise JobTimeout(
                        f"job {job_id} is not done after {timeout:g} s "
                        f"({status.done}/{status.total} chunks); ask later: conquer result {job_id}"
                    )
                if lost:
                    time.sleep(min(RETRY_S, remaining))
                else:
                    wake.sleep(min(POLL_S, remaining))
        finally:
            wake.close()

    def _records_from(self, job_id: str, start: int) -> list[dict[str, Any]]:
        """The job's chunk records from position `start` of its log on (each read once by a poller)."""
        with self._reading():
            return self.store.records(job_id, start)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A broker that cannot be reached (or is still loading its data) as BrokerUnreachable, naming
        its URL: one line for the CLI, and what `wait` retries."""
        try:
            yield
        except redis.errors(transient_only=True) as error:
            raise BrokerUnreachable(
                f"lost Redis at {mask(self.settings.result_backend)}: {_reason(error)}"
            ) from None

    @contextmanager
    def _controlling(self) -> Iterator[None]:
        """Celery's remote control (revoke, inspect) over the broker: a broker lost meanwhile as
        BrokerUnreachable, naming its URL (`Client.connect` makes kombu give up at once)."""
        try:
            yield
        except self.broker.errors(transient_only=True) as error:
            raise BrokerUnreachable(
                f"lost {self.broker.NAME} at {mask(self.settings.broker_url)}: {_reason(error)}"
            ) from None

    def records(self, job_id: str) -> list[dict[str, Any]]:
        """One record per chunk that ran (the last run of each), in chunk order."""
        latest = {record["index"]: record for record in self._records_from(job_id, 0)}
        return [latest[index] for index in sorted(latest)]

    # ------------------------------------------------------------------------------------- cancel

    def cancel(self, job_id: str) -> tuple[JobStatus, int]:
        """Cancel the job: mark it (chunks that start later skip themselves) and revoke every chunk
        not yet done, stopping those running. Returns the status before and how many were revoked.

        A broker or result backend lost midway raises BrokerUnreachable saying what was done: perhaps
        nothing (the mark failed, or its reply was lost), or the mark but not the revoke (no chunk
        starts any more; those running finish their run)."""
        status = self.status(job_id)
        if status.over:
            return status, 0
        try:
            with self._reading():
                self.store.cancel(job_id)
                pending = [chunk_task_id(job_id, index) for index in self.store.pending(job_id, status.total)]
        except BrokerUnreachable as error:
            raise BrokerUnreachable(f"{error}; job {job_id} may not be cancelled: cancel it again") from None
        try:
            with self._controlling():
                # One broadcast for all of them. terminate: a running chunk's pool process is stopped
                # (and replaced), so the workers are free at once; the chunk is acknowledged, not
                # redelivered.
                self.app.control.revoke([*pending, job_id], terminate=True)
        except BrokerUnreachable as error:
            raise BrokerUnreachable(
                f"{error}; job {job_id} is marked cancelled (none of its chunks starts any more), but its "
                f"{len(pending)} chunk(s) not done were not revoked: those running finish their run"
            ) from None
        return status, len(pending)

    # ------------------------------------------------------------------------------------ workers

    def consumer(self, timeout: float) -> str | None:
        """A worker that consumes the stack's queue, or None if none answers in time (`consumers`)."""
        return consumers.first_consumer(self.app, timeout)

    def workers(self, timeout: float) -> list[WorkerInfo]:
        """Every worker that answers within `timeout` s, with its pool and the chunks it is running."""
        from workers.celery.app import CHUNK_TASK

        inspect = self.app.control.inspect(timeout=timeout)
        with self._controlling():
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


@cache
def _fail_fast_connection() -> type[Any]:
    """kombu's Connection, whose `ensure` (retrying an operation across reconnections) gives up at the
    first lost connection unless told how often to retry: for a client's app, which reports, never
    waits. So are the connections of its pools (kombu's pools make plain ones: hence the pool class).

    kombu's remote control (`revoke`, `inspect`) publishes with `retry=True` and no limit, through the
    app's pooled producers: a broker lost after `reach` checked it kept `conquer cancel / workers /
    submit` reconnecting forever."""
    from kombu import Connection
    from kombu.connection import ConnectionPool, PooledConnection

    class FailFast:
        def ensure(
            self, obj: Any, fun: Any, errback: Any = None, max_retries: Any = None, **options: Any
        ) -> Any:
            limit = 0 if max_retries is None else max_retries
            return super().ensure(obj, fun, errback, limit, **options)  # type: ignore[misc]

    class FailFastPooled(FailFast, PooledConnection):
        pass

    class FailFastPool(ConnectionPool):
        def new(self) -> Any:
            return FailFastPooled(self, **dict(self.connection._info(resolve=False)))

    class FailFastConnection(FailFast, Connection):  # type: ignore[misc]
        def Pool(self, limit: int | None = None, **options: Any) -> Any:
            return FailFastPool(self, limit=limit, **options)

    return FailFastConnection


def reach(settings: Settings, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise BrokerUnreachable (naming the URL, password masked) unless the broker and the result
    backend both answer PING within `timeout` seconds in all — slow DNS included."""
    broker = brokers.for_url(settings.broker_url)
    # The result backend is Redis whatever the broker (one ping when both are the same Redis).
    servers: dict[str, brokers.Broker] = {settings.broker_url: broker, settings.result_backend: redis}
    errors: list[str] = []

    def ping() -> None:
        for url, server in servers.items():
            try:
                server.ping(url, timeout, ca_file=settings.broker_ca_file if server is broker else "")
            except Exception as error:
                hint = f" ({UNTRUSTED_HINT})" if _untrusted_certificate(error) else ""
                errors.append(f"cannot reach {server.NAME} at {mask(url)}: {_reason(error)}{hint}")
                return

    # A daemon thread, so that a resolver stuck past the deadline cannot keep `conquer` waiting.
    probe = threading.Thread(target=ping, name="conquer-reach", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        raise BrokerUnreachable(
            f"cannot reach {broker.NAME} at {mask(settings.broker_url)}: no answer in {timeout:g} s"
        )
    if errors:
        raise BrokerUnreachable(errors[0])


#: What to do about a broker whose TLS certificate is not signed by a CA trusted here.
UNTRUSTED_HINT = (
    f"its TLS certificate is not signed by a CA trusted here: set {ENV_BROKER_CA_FILE} to the file of the "
    "CA that signed it"
)

#: OpenSSL's verify codes for "no trusted CA signed this" (x509_vfy.h): unable to get the issuer's
#: certificate (2, and 20 locally), self-signed (18, 19 in the chain), leaf not verifiable (21). Not
#: a host name mismatch (62, 64), which trusting another CA would not cure.
UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21})


def _untrusted_certificate(error: BaseException | None) -> bool:
    """Whether `error`, or what it was raised from (kombu wraps it), is a certificate no trusted CA
    signed."""
    import ssl

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ssl.SSLCertVerificationError):
            return error.verify_code in UNTRUSTED_CODES
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].rstrip(".")
