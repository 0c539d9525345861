"""The job store: each job's record in Redis, kept so that asking how far it got costs O(1) whatever
the number of chunks. The client writes a job's record when it submits it and reads it to follow it;
the chunk tasks write to it as they run and finish.

Celery knows each task's state, but asking a chord how far it got means one backend round trip per
chunk (`GroupResult.completed_count()`), and it counts only successes. So the chunk tasks keep a few
keys per job themselves, next to Celery's results, and every read here is one pipelined round trip:

    {prefix}conquer:job:{id}          hash: the job's parameters, submitted/started/finished times,
                                      the combined value, the first error, cancelled, one
                                      `worker:{node}` counter per worker that ran a chunk, and
                                      counters of chunk runs started (`attempts`), chunk runs to
                                      be retried (`retries`) and combine runs (`combines`)
    {prefix}conquer:job:{id}:done     bitmap: bit i set once chunk i succeeded
    {prefix}conquer:job:{id}:failed   bitmap: bit i set once chunk i failed
    {prefix}conquer:job:{id}:log      list: one JSON record per chunk run (who ran it, when)

Bitmaps, not counters: with late acknowledgement a chunk can run twice (its worker died after
computing it), and setting a bit twice still counts once. The counters, on the contrary, count every
run: `attempts` above the number of chunks, or `combines` above 1, is a re-run made visible. Every
write also (re)sets the keys' TTL, so no key outlives `result_expires` — even one a late duplicate
would otherwise re-create.

Usage::

    store = JobStore(redis_client(url), prefix="", ttl=86400)  # workers.celery.brokers.redis
    store.status(job_id)
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tasks.job import Job

if TYPE_CHECKING:
    import redis

#: Job ids are 16 lowercase hex digits (64 random bits): short enough to type, and anything else
#: is refused before Redis is asked.
JOB_ID = re.compile(r"[0-9a-f]{16}")

WORKER_FIELD = "worker:"
ATTEMPTS, RETRIES, COMBINES = "attempts", "retries", "combines"

#: The states `status` reports, in the order a job goes through them.
QUEUED, RUNNING, SUCCESS, FAILURE, CANCELLED = "QUEUED", "RUNNING", "SUCCESS", "FAILURE", "CANCELLED"


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What `status` reports about one job."""

    job_id: str
    job: Job
    submitted: float
    done: int
    failed: int
    started: float | None = None
    finished: float | None = None
    value: int | None = None
    #: The first failure: (the chunk, as `Chunk.describe()` says it; the error), or the client's
    #: reason for abandoning the job (chunk "").
    failure: tuple[str, str] | None = None
    cancelled: bool = False
    #: Chunks run per worker node name.
    workers: dict[str, int] = field(default_factory=dict)
    #: Chunk runs started (a chunk redelivered or retried counts once per run).
    attempts: int = 0
    #: Chunk runs that raised a transient error and were sent again (after a backoff).
    retries: int = 0
    #: Times the combine step ran: 1 for a job that succeeded once and only once.
    combines: int = 0

    @property
    def total(self) -> int:
        return self.job.chunks

    @property
    def error(self) -> str | None:
        if self.failure is None:
            return None
        chunk, error = self.failure
        return f"{chunk} failed: {error}" if chunk else error

    @property
    def state(self) -> str:
        if self.cancelled:
            return CANCELLED
        if self.failed or self.failure:
            return FAILURE
        if self.value is not None:
            return SUCCESS
        if self.started is not None or self.done:
            return RUNNING
        return QUEUED

    @property
    def over(self) -> bool:
        """Nothing more will happen to this job."""
        return self.state in (SUCCESS, FAILURE, CANCELLED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "state": self.state,
            "kind": self.job.kind,
            "n": self.job.n,
            "chunks": {"total": self.total, "done": self.done, "failed": self.failed},
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "value": self.value,
            "error": self.error,
            "workers": self.workers,
            "attempts": self.attempts,
            "retries": self.retries,
            "combines": self.combines,
        }


class JobStore:
    """Reads and writes the records of jobs under one key prefix, each key with a TTL of `ttl` s."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._scripts = _scripts(client)

    def key(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}conquer:job:{job_id}{':' + part if part else ''}"

    def keys(self, job_id: str) -> list[str]:
        return [self.key(job_id, part) for part in ("", "done", "failed", "log")]

    # ---------------------------------------------------------------------------------- the client

    def create(self, job_id: str, job: Job) -> None:
        """Record a job before any of its chunks is sent (so a chunk never finds it missing)."""
        fields: dict[Any, Any] = {
            "kind": job.kind,
            "n": job.n,
            "chunks": job.chunks,
            "latency": job.latency,
            "submitted": time.time(),
        }
        if job.fault is not None:
            fields["fault"] = job.fault
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job_id), mapping=fields)
            # Size both bitmaps now: later SETBITs then never grow (or create) them.
            pipe.setbit(self.key(job_id, "done"), job.chunks - 1, 0)
            pipe.setbit(self.key(job_id, "failed"), job.chunks - 1, 0)
            for key in self.keys(job_id)[:3]:
                pipe.expire(key, self.ttl)
            pipe.execute()

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status in one round trip, or None if no such job is (still) known."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(job_id))
            pipe.bitcount(self.key(job_id, "done"))
            pipe.bitcount(self.key(job_id, "failed"))
            record, done, failed = pipe.execute()
        if b"kind" not in record:  # never submitted, expired, or only a late chunk's trace left
            return None
        fields = {key.decode(): value.decode() for key, value in record.items()}
        job = Job(
            fields["kind"],
            int(fields["n"]),
            int(fields["chunks"]),
            latency=float(fields["latency"]),
            fault=fields.get("fault"),
        )
        return JobStatus(
            job_id=job_id,
            job=job,
            submitted=float(fields["submitted"]),
            done=int(done),
            failed=int(failed),
            started=_number(fields.get("started")),
            finished=_number(fields.get("finished")),
            value=int(fields["value"]) if "value" in fields else None,
            failure=_failure(fields.get("failure")),
            cancelled="cancelled" in fields,
            workers={
                name.removeprefix(WORKER_FIELD): int(count)
                for name, count in fields.items()
                if name.startswith(WORKER_FIELD)
            },
            attempts=int(fields.get(ATTEMPTS, 0)),
            retries=int(fields.get(RETRIES, 0)),
            combines=int(fields.get(COMBINES, 0)),
        )

    def records(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        """Chunk records from position `start` of the job's log on (a poller passes how many it has
        read, so each record crosses the network once)."""
        return [json.loads(raw) for raw in self.client.lrange(self.key(job_id, "log"), start, -1)]

    def pending(self, job_id: str, chunks: int) -> list[int]:
        """The indexes of the chunks that have not succeeded."""
        bitmap = cast(bytes, self.client.get(self.key(job_id, "done")) or b"")
        return [index for index in range(chunks) if not _bit(bitmap, index)]

    def cancel(self, job_id: str) -> None:
        self._touch(self.key(job_id), "hsetnx", "cancelled", time.time())

    def abandon(self, job_id: str, error: str) -> None:
        """Mark a job failed from the client side (e.g. it could not be sent completely)."""
        self._touch(self.key(job_id), "hsetnx", "failure", json.dumps(["", error]))

    # ---------------------------------------------------------------------------------- the worker

    def chunk_started(self, job_id: str) -> bool:
        """Note that a chunk of the job began (one more attempt); False if the job was cancelled
        (skip the chunk, which then does not count as an attempt)."""
        return bool(self._scripts.started(keys=[self.key(job_id)], args=[time.time(), self.ttl, ATTEMPTS]))

    def chunk_retried(self, job_id: str) -> None:
        """A chunk raised a transient error and will run again after a backoff."""
        self._touch(self.key(job_id), "hincrby", RETRIES, 1)

    def chunk_done(self, job_id: str, record: dict[str, Any]) -> None:
        self._scripts.done(
            keys=[self.key(job_id), self.key(job_id, "done"), self.key(job_id, "log")],
            args=[record["index"], json.dumps(record), WORKER_FIELD + record["host"], self.ttl],
        )

    def chunk_failed(self, job_id: str, index: int, chunk: str, error: str) -> None:
        """Chunk `index` (described as `chunk`) raised `error`; the job keeps its first failure."""
        failed = self.key(job_id, "failed")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.setbit(failed, index, 1)
            pipe.hsetnx(self.key(job_id), "failure", json.dumps([chunk, error]))
            pipe.expire(failed, self.ttl)
            pipe.expire(self.key(job_id), self.ttl)
            pipe.execute()

    def finished(self, job_id: str, value: int) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job_id), mapping={"value": value, "finished": time.time()})
            pipe.hincrby(self.key(job_id), COMBINES, 1)
            pipe.expire(self.key(job_id), self.ttl)
            pipe.execute()

    def _touch(self, key: str, command: str, *args: Any) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            getattr(pipe, command)(key, *args)
            pipe.expire(key, self.ttl)
            pipe.execute()


# The two writes every chunk makes, as Lua scripts: one round trip and one command each (EVALSHA), and
# atomic. (A redis-py pipeline per write cost more CPU than Celery's own per-task bookkeeping.)
CHUNK_STARTED = """
if redis.call('HEXISTS', KEYS[1], 'cancelled') == 1 then return 0 end
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

CHUNK_DONE = """
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[4]) end
"""


@dataclass(frozen=True, slots=True)
class _Scripts:
    started: Any
    done: Any


def _scripts(client: redis.Redis) -> _Scripts:
    # register_script only hashes the text; Redis loads it on first use (and again if flushed).
    return _Scripts(client.register_script(CHUNK_STARTED), client.register_script(CHUNK_DONE))


def _failure(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    chunk, error = json.loads(text)
    return str(chunk), str(error)


def _number(text: str | None) -> float | None:
    return float(text) if text else None


def _bit(bitmap: bytes, index: int) -> bool:
    """Bit `index` of a Redis bitmap (bit 0 is the most significant bit of byte 0)."""
    byte = index // 8
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (index % 8)))
