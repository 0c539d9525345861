"""Processes + shared memory: the work list and the partial results live in `Value`/`Array` slots.

No messages at all: every worker gets the same few shared-memory objects when it starts. A worker
claims the next chunk by bumping a shared counter, computes its range, and writes its partial result,
its pid and its times into its chunk's slots, adding the partial to a shared running total. One `Lock`
makes each claim and each write atomic. The parent only waits for the workers to exit.

Usage::

    conquer run sum 100_000_000 --on processes --ipc shared -v
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from tasks import Job, chunk_at
from workers.base import (
    ChunkError,
    ChunkFailure,
    ChunkResult,
    ExecutorError,
    Progress,
    Report,
    attempt,
    make_report,
)
from workers.processes.supervise import (
    POLL_S,
    check_workers,
    ctrl_c_held,
    exited,
    get_context,
    ignore_sigint,
    stop,
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


def _read(job: Job, board: Board, index: int, host: str) -> ChunkResult:
    chunk = chunk_at(job, index)
    return ChunkResult(
        index=index,
        start=chunk.start,
        stop=chunk.stop,
        value=board.values[index],
        host=host,
        pid=board.pids[index],
        thread="MainThread",
        started=board.started[index],
        ended=board.ended[index],
    )


def run(job: Job, *, workers: int, start_method: str, progress: Progress | None = None) -> Report:
    context = get_context(start_method)
    host = socket.gethostname()
    began = time.perf_counter()
    board = Board.create(context, job.chunks)
    processes = [
        context.Process(target=work, args=(job, board), name=f"shared-worker-{number}", daemon=True)
        for number in range(min(workers, job.chunks))
    ]
    reported: set[int] = set()
    try:
        with ctrl_c_held(start_method):
            for process in processes:
                process.start()
        while True:
            running = [process.sentinel for process in processes if process.exitcode is None]
            if running:
                wait(running, POLL_S)
            exited_before_read = exited(processes)
            with board.lock:
                finished = [i for i in range(job.chunks) if board.state[i] == FINISHED]
                error = board.error.value
            if error:
                chunk_text, _, message = error.decode(errors="replace").partition("\n")
                raise ChunkError(chunk_text, message)
            if progress:
                for index in finished:
                    if index not in reported:
                        reported.add(index)
                        progress(_read(job, board, index, host))
            if len(finished) == job.chunks:
                break
            check_workers(processes, job.chunks - len(finished), exited_before_read=exited_before_read)
    finally:
        stop(processes)
    results = [_read(job, board, index, host) for index in range(job.chunks)]
    wall = time.perf_counter() - began
    report = make_report(
        job,
        "processes",
        results,
        wall,
        workers=len(processes),
        ipc="shared",
        start_method=start_method,
        details={"shared_total": board.total.value},
    )
    if board.total.value != report.value:
        raise ExecutorError(f"shared total {board.total.value} != sum of partials {report.value}")
    return report
