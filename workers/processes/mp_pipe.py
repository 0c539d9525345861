"""Processes + one `Pipe` per worker: the parent deals chunks out on demand.

Each worker gets its own duplex pipe. The parent sends every worker one chunk, then waits on all pipes
at once (`multiprocessing.connection.wait`) and answers each result with the next chunk — or `None`
when none are left. Nothing is shared between workers: the parent is the only scheduler.

Usage::

    conquer run primes 2_000_000 --on processes --ipc pipe -v
"""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from tasks import Job, split
from workers.base import OnChunk, Report, WorkerLost, attempt
from workers.processes.supervise import (
    POLL_S,
    Channel,
    Outcome,
    WorkerTarget,
    ignore_sigint,
    supervise,
)


def work(connection: Connection) -> None:
    ignore_sigint()
    try:
        while (chunk := connection.recv()) is not None:
            connection.send(attempt(chunk))
    except (EOFError, BrokenPipeError):
        return  # the parent closed its end: the run is over (it failed or was interrupted)


class Pipes(Channel):
    """A duplex pipe per worker; the parent answers each outcome with that worker's next chunk."""

    def __init__(self, context: Any, job: Job, workers: int) -> None:
        self.pipes: list[tuple[Connection, Connection]] = [context.Pipe() for _ in range(workers)]
        self.unsent = iter(split(job))
        self.owner: dict[Connection, BaseProcess] = {}
        self.busy: set[Connection] = set()  # pipes whose worker is computing a chunk we are waiting for

    def worker(self, number: int) -> WorkerTarget:
        return work, (self.pipes[number][1],)

    def hand_out(self, processes: Sequence[BaseProcess]) -> None:
        for (parent, child), process in zip(self.pipes, processes, strict=True):
            child.close()  # the parent's copy: without it, a dead worker's pipe never reports EOF
            self.owner[parent] = process
            parent.send(next(self.unsent))  # there are no more workers than chunks
            self.busy.add(parent)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for parent in wait(list(self.busy), timeout):
            assert isinstance(parent, Connection)
            try:
                outcomes.append(parent.recv())
                following = next(self.unsent, None)
                parent.send(following)  # None tells the worker to exit
            except (EOFError, OSError):  # the worker died: its end of the pipe is gone
                self._lost(self.owner[parent])
                self.busy.discard(parent)
                continue
            if following is None:
                self.busy.discard(parent)
        return outcomes

    def _lost(self, process: BaseProcess) -> None:
        """A worker's pipe broke. If it died of a signal or an error, `supervise` says so as soon as
        this look is over; a worker that closed its pipe and exited cleanly is named here."""
        process.join(POLL_S)
        if process.exitcode in (None, 0):
            raise WorkerLost(f"worker {process.name} closed its pipe mid-job")

    def close(self) -> None:
        # The workers are stopped by now; `work` still expects EOF, for a caller that closes first.
        for parent, _ in self.pipes:
            parent.close()


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    return supervise(job, Pipes, workers=workers, start_method=start_method, progress=progress, ipc="pipe")


if TYPE_CHECKING:  # mypy checks this module against the IPC interface (workers.processes)
    from workers.processes import Ipc
    from workers.processes import mp_pipe as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Ipc = this
