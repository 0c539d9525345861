"""Processes + `multiprocessing.Queue`: the classic exercise, with ranges instead of list slices.

The parent puts every chunk on one `todo` queue followed by one `None` per worker; each worker takes
chunks until it reads `None` and puts each result on the `done` queue. Whoever is free takes the next
chunk, so uneven chunks (the `primes` job) balance themselves.

Usage::

    conquer run sum 100_000_000 --on processes --ipc queue -v
"""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING, Any

from tasks import Chunk, Job, split
from workers.base import ChunkFailure, ChunkResult, OnChunk, Report, attempt
from workers.processes.supervise import Channel, Outcome, WorkerTarget, drain, ignore_sigint, supervise


def work(todo: Queue[Chunk | None], done: Queue[ChunkResult | ChunkFailure]) -> None:
    ignore_sigint()
    while (chunk := todo.get()) is not None:
        done.put(attempt(chunk))


class Queues(Channel):
    """One queue of chunks out, shared by every worker, and one queue of outcomes back."""

    def __init__(self, context: Any, job: Job, workers: int) -> None:
        del workers  # every worker gets the same two queues
        self.job = job
        self.todo: Queue[Chunk | None] = context.Queue()
        self.done: Queue[ChunkResult | ChunkFailure] = context.Queue()

    def worker(self, number: int) -> WorkerTarget:
        return work, (self.todo, self.done)

    def hand_out(self, processes: Sequence[BaseProcess]) -> None:
        # After the workers started, and with Ctrl-C held (as `supervise` calls this): a Ctrl-C landing
        # inside Queue.put() can leave the queue's internal lock held, and the queue's exit handler then
        # waits for that lock forever.
        for chunk in split(self.job):
            self.todo.put(chunk)
        for _ in processes:
            self.todo.put(None)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        return drain(self.done, timeout)

    def close(self) -> None:
        # Chunks left unsent after a failure must not make the interpreter wait at exit for the
        # queue's feeder thread to flush them into a pipe nobody reads.
        self.todo.cancel_join_thread()


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    return supervise(job, Queues, workers=workers, start_method=start_method, progress=progress, ipc="queue")


if TYPE_CHECKING:  # mypy checks this module against the IPC interface (workers.processes)
    from workers.processes import Ipc
    from workers.processes import mp_queue as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Ipc = this
