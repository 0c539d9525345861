"""Processes + a `Manager`: a server process holds the work queue and the results dict.

`SyncManager` starts one extra process that owns real Python objects; workers and parent hold proxies,
and every `get()` or `results[i] = ...` is a request over a socket to that server. It is the most
flexible shared state (any picklable object, even across machines — see `workers.managers`) and the
slowest: each operation is a round trip.

Usage::

    conquer run sum 100_000_000 --on processes --ipc manager -v
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.managers import DictProxy, SyncManager
from multiprocessing.process import BaseProcess
from queue import Queue
from typing import TYPE_CHECKING, Any

from tasks import Chunk, Job, split
from workers.base import ChunkFailure, ChunkResult, OnChunk, Report, attempt
from workers.processes.supervise import (
    Channel,
    Outcome,
    WorkerTarget,
    ctrl_c_held,
    ignore_sigint,
    supervise,
    wait_for_exit,
)


def work(todo: Queue[Chunk | None], results: DictProxy[int, Any]) -> None:
    ignore_sigint()
    while (chunk := todo.get()) is not None:
        results[chunk.index] = attempt(chunk)


class ManagerChannel(Channel):
    """Proxies of a queue of chunks and a dict of outcomes, both held by the manager's server."""

    def __init__(self, manager: SyncManager, job: Job, workers: int) -> None:
        self.todo: Queue[Chunk | None] = manager.Queue()
        self.results: DictProxy[int, ChunkResult | ChunkFailure] = manager.dict()
        self.seen: set[int] = set()
        for chunk in split(job):
            self.todo.put(chunk)
        for _ in range(workers):
            self.todo.put(None)

    def worker(self, number: int) -> WorkerTarget:
        return work, (self.todo, self.results)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        wait_for_exit(processes, timeout)  # a dict proxy cannot be waited on: look every `timeout`
        # keys(): one round trip to the manager for the list, where iterating the proxy is one per key.
        fresh = sorted(index for index in self.results.keys() if index not in self.seen)  # noqa: SIM118
        self.seen.update(fresh)
        return [self.results[index] for index in fresh]


@contextmanager
def open_channel(context: Any, job: Job, workers: int) -> Iterator[Channel]:
    manager = SyncManager(ctx=context)
    with ctrl_c_held(context.get_start_method()):
        manager.start(ignore_sigint)
    try:
        yield ManagerChannel(manager, job, workers)
    finally:
        manager.shutdown()  # after the workers are stopped: none of them sees its server vanish


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    return supervise(
        job, open_channel, workers=workers, start_method=start_method, progress=progress, ipc="manager"
    )


if TYPE_CHECKING:  # mypy checks this module against the IPC interface (workers.processes)
    from workers.processes import Ipc
    from workers.processes import mp_manager as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Ipc = this
