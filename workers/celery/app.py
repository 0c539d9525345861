"""The Celery app: the job as a canvas of thin tasks over `tasks.job`'s pure functions.

A job is `chord(group(chunk × K), combine)`: each `conquer.chunk` task gets one chunk's *range* (the
`Chunk` message, a few bytes whatever n is), computes it with `run_chunk`, and returns the partial; the
Redis result backend counts the partials in, and the last one triggers `conquer.combine` on a worker,
which adds them up with `combine`. Nothing else runs on the workers.

What happens when a chunk goes wrong (the drills in tests/drills/test_worker_faults.py show each):
its worker is killed -> late acknowledgement, the chunk runs again elsewhere; it raises -> the job
fails naming the chunk's range; it raises TransientFault -> retried after 1, 2, 4 s; it overruns the
soft time limit -> it fails naming the limit; it ignores that -> the hard limit kills its process.

Configuration comes from `workers.celery.settings` (the environment). This module's `app` is built
from it when the module is imported; `celery -A tasks` finds it through the entry module `tasks.celery`,
so Celery's own CLI works as in its tutorial.

Usage::

    celery -A tasks worker --loglevel=INFO
    celery -A tasks inspect ping
    celery -A tasks call conquer.chunk --args '[{"kind": "sum", "index": 0, "start": 1, "stop": 101}]'
"""

from __future__ import annotations

import os
import threading
import time
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import celeryd_init, worker_process_init

from tasks.faults import TransientFault
from tasks.job import Chunk, combine, run_chunk
from workers.celery import brokers, kombu_fixes
from workers.celery.brokers import redis
from workers.celery.jobstore import JobStore
from workers.celery.settings import Settings, settings

CHUNK_TASK = "conquer.chunk"
COMBINE_TASK = "conquer.combine"

#: A chunk that raises TransientFault runs again after 1, 2, 4 s (exponential backoff), at most this
#: many times; then the job fails with that error, naming the chunk.
CHUNK_RETRIES = 3
RETRY_BACKOFF_S = 1
RETRY_BACKOFF_MAX_S = 8


def config(settings: Settings) -> dict[str, Any]:
    """Celery settings for `settings`, with the reason for each choice that isn't Celery's default."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        # What the broker needs (for Redis: the visibility timeout, the restore sweep, the key prefix).
        **brokers.for_url(settings.broker_url).config(settings),
        # The result backend is Redis whatever the broker; Celery's Redis docs: the visibility
        # timeout must be set here too, or a backend-side default (one hour) can win.
        "result_backend_transport_options": redis.transport_options(settings),
        # JSON only: a pickled message could run arbitrary code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Results (and with them chord counters) expire; 0 would delete chord keys at once (celery#5237).
        "result_expires": settings.result_expires,
        "redis_socket_timeout": 10,
        "redis_socket_connect_timeout": 3,
        # Workers wait for a broker that isn't up yet (compose starts them together) instead of exiting.
        "broker_connection_retry_on_startup": True,
        # A publisher gives up after a few tries instead of Celery's default of retrying for long.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        # One message per pool process at a time: a free process takes the next chunk, a busy one
        # hoards none (which would both unbalance uneven chunks and delay their redelivery).
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "worker_pool": settings.worker_pool,
        # Task events, for Flower.
        "worker_send_task_events": settings.task_events,
        # A late-acked chunk still running when the broker connection drops is left to finish (it is
        # redelivered later anyway, and a chunk counts once). Cancelling it, as Celery offers, marks
        # it REVOKED in the chord and puts its id on the worker's revoked list, which then discards the
        # redelivery: the chord fails for good (seen in the Redis-restart drill).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": "conquer",
        "broker_connection_timeout": 3,
    }


def make_app(settings: Settings) -> Celery:
    """A Celery app for `settings`, with the two tasks registered."""
    app = Celery("tasks", set_as_current=False)
    app.conf.update(config(settings))
    app.conf.conquer_settings = settings
    app.task(
        name=CHUNK_TASK,
        bind=True,
        # Not shared: Celery's default registers a task in every app created later in the process,
        # with the options of the first — a second app's time limits (a drill stack's, next to the
        # module-level app) would be silently replaced, and the client stamps them on every message.
        shared=False,
        # A chunk is a pure function of its message, so running it again is always safe: acknowledge
        # it only after it ran (a worker killed mid-chunk leaves it to be redelivered), and when a pool
        # process dies under it, put it back in the queue instead of failing the job.
        acks_late=True,
        reject_on_worker_lost=True,
        soft_time_limit=settings.chunk_time_limit,
        time_limit=settings.hard_time_limit,
        # Retried: TransientFault only, the stand-in for an error that heals (a timeout, a dropped
        # connection). Never a deterministic error — a chunk is a pure function of its message, so a
        # real bug raises again on every retry and would only delay the job's failure by the backoff.
        autoretry_for=(TransientFault,),
        max_retries=CHUNK_RETRIES,
        retry_backoff=RETRY_BACKOFF_S,
        retry_backoff_max=RETRY_BACKOFF_MAX_S,
        # No jitter: the retries of one job's few failing chunks don't stampede anything, and fixed
        # delays are what the README and the drill can state.
        retry_jitter=False,
        # The hard time limit is handled in the worker's main process (the pool process is killed):
        # this records the chunk's failure there. (Celery calls on_failure for a hard time limit
        # since 5.7, celery#10226; before, such a job stays RUNNING until the client's deadline.)
        on_failure=chunk_failure,
    )(chunk_task)
    app.task(name=COMBINE_TASK, bind=True, shared=False)(combine_task)
    return app


def chunk_task(task: Task[Any, Any], message: dict[str, Any], job_id: str | None = None) -> int:
    """Compute one chunk; with a `job_id`, record progress (and skip the chunk if the job was cancelled)."""
    chunk = Chunk.from_message(message)
    store = job_store(task.app) if job_id else None
    if store and job_id and not store.chunk_started(job_id):
        raise Ignore()  # the job was cancelled: nothing to compute, nothing to report
    started = time.time()
    try:
        value = run_chunk(chunk, attempt=task.request.retries)
    except SoftTimeLimitExceeded:
        if store and job_id:
            limit = f"over the chunk time limit of {_limits(task)[1]} s (use more chunks)"
            store.chunk_failed(job_id, chunk.index, chunk.describe(), limit)
        raise
    except TransientFault as exc:
        # autoretry_for turns this into a retry, unless this was the last allowed attempt.
        if store and job_id:
            if task.request.retries < (task.max_retries or 0):
                store.chunk_retried(job_id)
            else:
                error = f"{type(exc).__name__}: {exc}, still after {task.request.retries} retries"
                store.chunk_failed(job_id, chunk.index, chunk.describe(), error)
        raise
    except Exception as exc:
        if store and job_id:
            store.chunk_failed(job_id, chunk.index, chunk.describe(), f"{type(exc).__name__}: {exc}")
        raise
    if store and job_id:
        store.chunk_done(
            job_id,
            {
                "index": chunk.index,
                "start": chunk.start,
                "stop": chunk.stop,
                "value": value,
                "host": task.request.hostname or "?",
                "pid": os.getpid(),
                "thread": threading.current_thread().name,
                "started": started,
                "ended": time.time(),
            },
        )
    return value


def chunk_failure(
    task: Task[Any, Any],
    exc: BaseException,
    task_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    einfo: Any,
) -> None:
    """Record a chunk killed at its hard time limit (Celery calls this in the worker's main process,
    where the pool process that ran the chunk no longer exists). Every other failure was recorded
    by the chunk itself."""
    if not isinstance(exc, TimeLimitExceeded):
        return
    message = args[0]
    job_id = args[1] if len(args) > 1 else kwargs.get("job_id")
    if not job_id:
        return
    chunk = Chunk.from_message(message)
    hard = exc.args[0] if exc.args else task.time_limit
    error = (
        f"killed at the chunk hard time limit of {hard:g} s "
        f"(it did not stop at the soft limit of {_limits(task)[1]} s)"
    )
    job_store(task.app).chunk_failed(job_id, chunk.index, chunk.describe(), error)


def _limits(task: Task[Any, Any]) -> tuple[Any, Any]:
    """(hard, soft) time limits in force for the running chunk: the ones its message carries (the
    sender's, which the worker obeys), else the task's own."""
    hard, soft = task.request.timelimit or (None, None)
    return hard or task.time_limit, soft or task.soft_time_limit


def combine_task(task: Task[Any, Any], partials: list[int], kind: str, job_id: str | None = None) -> int:
    """Add up the chunks' partials (the chord's body, run by whichever worker the last chunk was on)."""
    value = combine(kind, partials)
    if job_id:
        job_store(task.app).finished(job_id, value)
    return value


#: How long a worker's own writes to Redis (a chunk's progress record) keep trying while Redis is
#: away, in seconds. A chunk that ends during a short outage — a Redis restart — then records its
#: result once Redis is back, as Celery's own result write does (its Redis backend retries a set for
#: about 20 s), instead of failing and taking the job with it. Well under the chunk's hard time limit.
#: Clients never wait like this: `conquer` reports an unreachable broker at once (exit 3).
WORKER_WRITE_RETRY_S = 10


#: The `celery worker` main process, recorded before its pool processes fork (they inherit it).
_worker_pid: int | None = None


@celeryd_init.connect
def _workers_ride_out_redis_restarts(conf: Any, **_: Any) -> None:
    """Runs in `celery worker` only, before its pool processes fork (so they inherit the setting)."""
    global _worker_pid  # noqa: PLW0603 -- one value per worker process, read by its pool children
    _worker_pid = os.getpid()
    conf.conquer_write_retry_s = WORKER_WRITE_RETRY_S
    kombu_fixes.replies_expire()  # and its remote-control replies expire in Redis (fix 3 there)


@worker_process_init.connect
def _pool_process_dies_with_its_worker(**_: Any) -> None:
    """Celery gives a pool process its death signal (SIGKILL when the worker exits) in the process's
    initializer, after the fork: a worker killed in between leaves an orphan that no signal will reach
    (seen once at load 9: two pool processes outlived a SIGKILLed embedded stack). This runs after that
    setting, so an orphan finds its parent gone here and exits, as `workers.celery.launcher` does.
    The solo pool sends this signal in the worker's own process, which is no pool process: it stays."""
    in_pool_process = _worker_pid is not None and os.getpid() != _worker_pid
    if in_pool_process and os.getppid() != _worker_pid:
        os._exit(1)


def job_store(app: Celery) -> JobStore:
    """The job store next to `app`'s results."""
    return _store(app.conf.conquer_settings, app.conf.get("conquer_write_retry_s", 0))


@cache
def _store(settings: Settings, retry_s: float) -> JobStore:
    # One client (and connection pool) per settings and process, made on first use: redis-py's pool
    # notices a fork and opens fresh connections in the child, so pool processes never share a socket
    # with their parent.
    client = redis.redis_client(settings.result_backend, retry_s=retry_s)
    return JobStore(client, prefix=redis.key_prefix(settings), ttl=settings.result_expires)


#: The app `celery -A tasks ...` finds (through `tasks.celery`), configured from the environment.
app = make_app(settings())
