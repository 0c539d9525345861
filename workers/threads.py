"""Threads, the classic way: `Thread` subclass workers pull ranges from a `queue.Queue` and add their
partial results to a shared tally under a `Lock`.

Under the GIL only one thread runs Python bytecode at a time, so CPU-bound jobs (`sum`, `primes`) take
as long as serially; an I/O-bound job (`download`) overlaps its waits and speeds up with the workers.
Threads cannot be killed: after a failure or Ctrl-C each worker stops once its current chunk ends.

Usage::

    conquer run sum 10_000_000 --on threads --workers 4 -v
    conquer run download 100 --chunks 100 --on threads --workers 32
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from tasks import Chunk, Job, split
from workers.base import ChunkFailure, ChunkResult, Executor, OnChunk, Report, attempt, make_report


class Tally:
    """The partial results the worker threads share."""

    def __init__(self) -> None:
        # `_lock` guards `results`, `total` and `failure` together, so `total` always equals the sum of
        # `results` and no result is added after a failure was recorded.
        self._lock = threading.Lock()
        self.results: list[ChunkResult] = []
        self.total = 0
        self.failure: ChunkFailure | None = None

    def add(self, result: ChunkResult) -> None:
        with self._lock:
            self.results.append(result)
            self.total += result.value

    def fail(self, failure: ChunkFailure) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = failure


class ChunkWorker(threading.Thread):
    """Takes chunks off `todo` until it reads the `None` sentinel or `stop` is set."""

    def __init__(
        self,
        number: int,
        todo: queue.SimpleQueue[Chunk | None],
        tally: Tally,
        stop: threading.Event,
        progress: OnChunk | None,
    ) -> None:
        # Daemon, so a Ctrl-C in a CLI run doesn't keep the interpreter alive until a long chunk ends.
        super().__init__(name=f"chunk-worker-{number}", daemon=True)
        self.todo = todo
        self.tally = tally
        self.stop = stop
        self.progress = progress

    def run(self) -> None:
        while not self.stop.is_set():
            chunk = self.todo.get()
            if chunk is None:
                return
            outcome = attempt(chunk)
            if isinstance(outcome, ChunkFailure):
                self.tally.fail(outcome)
                self.stop.set()
                return
            self.tally.add(outcome)
            if self.progress:
                self.progress(outcome)


def run(job: Job, *, workers: int, progress: OnChunk | None = None) -> Report:
    chunks = split(job)
    count = min(workers, len(chunks))
    began = time.perf_counter()
    todo: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
    for chunk in chunks:
        todo.put(chunk)
    for _ in range(count):
        todo.put(None)
    tally, stop = Tally(), threading.Event()
    threads = [ChunkWorker(number, todo, tally, stop, progress) for number in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()  # on Ctrl-C: no worker takes another chunk
    if tally.failure is not None:
        raise tally.failure.to_exception()
    return make_report(job, "threads", tally.results, time.perf_counter() - began, workers=count)


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import threads as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Executor = this
