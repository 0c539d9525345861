"""The one small interface every executor implements (`Executor`), and the records they all return.

An executor is a module with a `run` function (and, if it sets something up once for many runs, a
`deploy` context manager: `DeployingExecutor`). `run` computes every chunk of a job on up to `workers`
workers of its kind and returns a `Report`: the combined answer, whether it matches the job's
independent check, the wall time, and one `ChunkResult` per chunk saying who ran it (host, pid,
thread) and when. A chunk that raises ends the run with `ChunkError`, which names the chunk's range;
the executor stops its workers before raising.

Each executor module ends by binding itself to its protocol, which is where mypy checks it::

    if TYPE_CHECKING:  # mypy checks this module against the executor interface
        from workers import serial as this  # noqa: PLW0406 (a module names itself only by importing)

        _: Executor = this
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from tasks import Chunk, Job, check, combine, run_chunk


class ExecutorError(RuntimeError):
    """A run could not finish: a chunk raised, or a worker died. The message is one readable line."""


class ChunkError(ExecutorError):
    """A chunk raised; the message names the chunk's range and the original error."""

    def __init__(self, chunk_text: str, error: str) -> None:
        super().__init__(f"{chunk_text} failed: {error}")
        self.chunk_text = chunk_text
        self.error = error


class WorkerLost(ExecutorError):
    """A worker process exited before the job was done (killed, crashed)."""


class BrokerUnreachable(ExecutorError):
    """The broker (Redis) did not answer; the message names its URL with the password masked."""


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One computed chunk: its range and partial result, who computed it and when (epoch seconds)."""

    index: int
    start: int
    stop: int
    value: int
    host: str
    pid: int
    thread: str
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ChunkFailure:
    """A chunk that raised, in a form that crosses any process boundary (no exception object)."""

    chunk_text: str
    error: str

    def to_exception(self) -> ChunkError:
        return ChunkError(self.chunk_text, self.error)


OnChunk = Callable[[ChunkResult], None]
"""What an executor's `progress=` takes: a callback called once per finished chunk with its result, in
the calling process; it may be called from any of its threads."""


def execute(chunk: Chunk) -> ChunkResult:
    """Run one chunk here and record where and when it ran."""
    started = time.time()
    return record(chunk, run_chunk(chunk), started)


def record(chunk: Chunk, value: int, started: float, worker: str | None = None) -> ChunkResult:
    """The result of `chunk`, computed here from `started` until now; `worker` names who ran it
    within this thread (a coroutine), if the thread's name is not enough."""
    thread = threading.current_thread().name
    return ChunkResult(
        index=chunk.index,
        start=chunk.start,
        stop=chunk.stop,
        value=value,
        host=socket.gethostname(),
        pid=os.getpid(),
        thread=f"{thread}/{worker}" if worker else thread,
        started=started,
        ended=time.time(),
    )


def attempt(chunk: Chunk) -> ChunkResult | ChunkFailure:
    """`execute`, with an exception turned into a picklable `ChunkFailure` naming the chunk's range."""
    try:
        return execute(chunk)
    except Exception as error:  # every failure must reach the parent as data, whatever its type
        return failure(chunk, error)


def failure(chunk: Chunk, error: BaseException) -> ChunkFailure:
    return ChunkFailure(chunk.describe(), f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Report:
    """The outcome of one run of one job on one executor."""

    job: Job
    executor: str
    workers: int
    value: int
    expected: int
    wall_s: float
    chunks: tuple[ChunkResult, ...]
    ipc: str | None = None
    start_method: str | None = None
    #: Executor-specific facts worth showing (broker URL kind, pool type, ...).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.value == self.expected

    @property
    def check_method(self) -> str:
        return self.job.spec.check_method

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.job.kind,
            "n": self.job.n,
            "chunks": self.job.chunks,
            "executor": self.executor,
            "ipc": self.ipc,
            "start_method": self.start_method,
            "workers": self.workers,
            "value": self.value,
            "expected": self.expected,
            "check_method": self.check_method,
            "verified": self.verified,
            "wall_s": self.wall_s,
            "details": self.details,
            "chunk_results": [chunk.to_dict() for chunk in self.chunks],
        }


@runtime_checkable
class Executor(Protocol):
    """What an executor module provides. mypy checks every executor module against it, and
    `workers.run` refuses a registered module that lacks it."""

    def run(self, job: Job, *, workers: int, progress: OnChunk | None = None) -> Report:
        """Run every chunk of `job` on up to `workers` workers and return the verified report; raise
        `ExecutorError` (`ChunkError`, `WorkerLost`, ...) if the run fails, with every worker stopped.
        `progress` is called once per finished chunk. An executor may take more keyword options, each
        with a default (the processes executor: `ipc`, `start_method`)."""
        ...


class Deployment(Protocol):
    """What a `deploy` set up, handed to each `run` as `deployment=`."""

    def facts(self) -> dict[str, Any]:
        """What to show about it next to the timings (JSON-safe)."""
        ...


#: The deployment type of one executor (the Celery one: `workers.celery.chord.Deployment`).
DeploymentT = TypeVar("DeploymentT", bound=Deployment)


@runtime_checkable
class DeployingExecutor(Executor, Protocol[DeploymentT]):
    """An executor with something to set up once for many runs (the Celery stack): `deploy` starts it
    and stops it on exit; `run` takes what it yields as `deployment=`, or deploys for itself without."""

    def deploy(self, *, workers: int) -> AbstractContextManager[DeploymentT]: ...

    def run(
        self,
        job: Job,
        *,
        workers: int,
        progress: OnChunk | None = None,
        deployment: DeploymentT | None = None,
    ) -> Report: ...


def make_report(
    job: Job,
    executor: str,
    results: Iterable[ChunkResult],
    wall_s: float,
    *,
    workers: int,
    ipc: str | None = None,
    start_method: str | None = None,
    details: dict[str, Any] | None = None,
) -> Report:
    """Combine the chunks' results, run the independent check, and assert nothing is missing."""
    ordered = tuple(sorted(results, key=lambda result: result.index))
    indexes = [result.index for result in ordered]
    if indexes != list(range(job.chunks)):
        missing = sorted(set(range(job.chunks)) - set(indexes))
        raise ExecutorError(
            f"{executor}: got results for {len(ordered)} of {job.chunks} chunks, "
            f"missing {missing[:5]}, duplicates: {len(indexes) != len(set(indexes))}"
        )
    return Report(
        job=job,
        executor=executor,
        workers=workers,
        value=combine(job.kind, [result.value for result in ordered]),
        expected=check(job),
        wall_s=wall_s,
        chunks=ordered,
        ipc=ipc,
        start_method=start_method,
        details=details or {},
    )
