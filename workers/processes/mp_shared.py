"""Processes + shared memory: the work list and the partial results live in `Value`/`Array` slots.

No messages at all: every worker gets the same few shared-memory objects when it starts. A worker
claims the next chunk by bumping a shared counter, computes its range, and writes its partial result,
its pid and its times into its chunk's slots, adding the partial to a shared running total. One `Lock`
makes each claim and each write atomic. The parent only looks at the board, whenever a worker exits
or `POLL_S` passes.

Usage::

    conquer run sum 100_000_000 --on processes --ipc shared -v
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from tasks import Job, chunk_at
from workers.base import ChunkFailure, ChunkResult, ExecutorError, OnChunk, Report, attempt
from workers.processes.supervise import (
    Channel,
    Outcome,
    WorkerTarget,
    ignore_sigint,
    supervise,
    wait_for_exit,
)

#: Bytes kept of a failed chunk's error text.
ERROR_BYTES = 400

PENDING, FINISHED = 0, 1


@dataclass
class Board:
    """The shared-memory slots, created by the parent and inherited by every worker.

    `lock` guards every field together, which keeps three invariants: each chunk index is handed out
    once (`next_index` is read and bumped in one step); `total` always equals the sum of `values` over
    the chunks whose `state` is FINISHED; and once `error` is set no worker claims another chunk.
    """

    lock: Any
    next_index: Any  # Value('q'): the next chunk to hand out
    total: Any  # Value('q'): running sum of finished partials
    error: Any  # Array('c'): the first failure's text, empty while all is well
    state: Any  # Array('b'): PENDING or FINISHED per chunk
    values: Any  # Array('q'): each chunk's partial result
    pids: Any  # Array('q')
    started: Any  # Array('d'): epoch seconds
    ended: Any  # Array('d')

    @classmethod
    def create(cls, context: Any, chunks: int) -> Board:
        # lock=False: the slots are raw shared memory; the one `lock` above is what guards them.
        return cls(
            lock=context.Lock(),
            next_index=context.Value("q", 0, lock=False),
            total=context.Value("q", 0, lock=False),
            error=context.Array("c", ERROR_BYTES, lock=False),
            state=context.Array("b", chunks, lock=False),
            values=context.Array("q", chunks, lock=False),
            pids=context.Array("q", chunks, lock=False),
            started=context.Array("d", chunks, lock=False),
            ended=context.Array("d", chunks, lock=False),
        )


def work(job: Job, board: Board) -> None:
    ignore_sigint()
    while True:
        with board.lock:
            index = board.next_index.value
            if index >= job.chunks or board.error.value:
                return
            board.next_index.value = index + 1
        chunk = chunk_at(job, index)
        outcome = attempt(chunk)
        with board.lock:
            if isinstance(outcome, ChunkFailure):
                text = f"{outcome.chunk_text}\n{outcome.error}".encode()[: ERROR_BYTES - 1]
                board.error.value = text
                return
            board.values[index] = outcome.value
            board.pids[index] = outcome.pid
            board.started[index] = outcome.started
            board.ended[index] = outcome.ended
            board.state[index] = FINISHED
            board.total.value += outcome.value


class SharedMemory(Channel):
    """The board, inherited by every worker; the parent looks at it whenever a worker exits or
    `timeout` passes (shared memory cannot be waited on)."""

    def __init__(self, context: Any, job: Job, workers: int) -> None:
        del workers  # every worker gets the same board
        self.job = job
        self.board = Board.create(context, job.chunks)
        self.host = socket.gethostname()
        self.reported: set[int] = set()

    def worker(self, number: int) -> WorkerTarget:
        return work, (self.job, self.board)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        wait_for_exit(processes, timeout)
        with self.board.lock:
            finished = [i for i in range(self.job.chunks) if self.board.state[i] == FINISHED]
            error = self.board.error.value
        if error:
            chunk_text, _, message = error.decode(errors="replace").partition("\n")
            return [ChunkFailure(chunk_text, message)]
        fresh = [index for index in finished if index not in self.reported]
        self.reported.update(fresh)
        return [self._read(index) for index in fresh]

    def _read(self, index: int) -> ChunkResult:
        # Outside the lock: a chunk's slots are written before its state says FINISHED, and never after.
        chunk = chunk_at(self.job, index)
        board = self.board
        return ChunkResult(
            index=index,
            start=chunk.start,
            stop=chunk.stop,
            value=board.values[index],
            host=self.host,
            pid=board.pids[index],
            thread="MainThread",
            started=board.started[index],
            ended=board.ended[index],
        )

    def details(self) -> dict[str, Any]:
        return {"shared_total": self.board.total.value}


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    report = supervise(
        job, SharedMemory, workers=workers, start_method=start_method, progress=progress, ipc="shared"
    )
    total = report.details["shared_total"]
    if total != report.value:  # the running total, kept under the lock, against the partials' sum
        raise ExecutorError(f"shared total {total} != sum of partials {report.value}")
    return report


if TYPE_CHECKING:  # mypy checks this module against the IPC interface (workers.processes)
    from workers.processes import Ipc
    from workers.processes import mp_shared as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Ipc = this
