"""Processes + `multiprocessing.Queue`: the classic exercise, with ranges instead of list slices.

The parent puts every chunk on one `todo` queue followed by one `None` per worker; each worker takes
chunks until it reads `None` and puts each result on the `done` queue. Whoever is free takes the next
chunk, so uneven chunks (the `primes` job) balance themselves.

Usage::

    conquer run sum 100_000_000 --on processes --ipc queue -v
"""

from __future__ import annotations

import queue
import time
from multiprocessing.queues import Queue

from tasks import Chunk, Job, split
from workers.base import ChunkFailure, ChunkResult, Progress, Report, attempt, make_report
from workers.processes.supervise import (
    POLL_S,
    accept,
    check_workers,
    ctrl_c_held,
    exited,
    get_context,
    ignore_sigint,
    stop,
)


def work(todo: Queue[Chunk | None], done: Queue[ChunkResult | ChunkFailure]) -> None:
    ignore_sigint()
    while (chunk := todo.get()) is not None:
        done.put(attempt(chunk))


def run(job: Job, *, workers: int, start_method: str, progress: Progress | None = None) -> Report:
    context = get_context(start_method)
    chunks = split(job)
    began = time.perf_counter()
    todo: Queue[Chunk | None] = context.Queue()
    done: Queue[ChunkResult | ChunkFailure] = context.Queue()
    processes = [
        context.Process(target=work, args=(todo, done), name=f"queue-worker-{number}", daemon=True)
        for number in range(min(workers, len(chunks)))
    ]
    results: list[ChunkResult] = []
    try:
        # The puts too: a Ctrl-C landing inside Queue.put() can leave the queue's internal lock held,
        # and the queue's exit handler then waits for that lock forever.
        with ctrl_c_held(start_method):
            for process in processes:
                process.start()
            for chunk in chunks:
                todo.put(chunk)
            for _ in processes:
                todo.put(None)
        while len(results) < len(chunks):
            exited_before_read = exited(processes)
            try:
                outcome = done.get(timeout=POLL_S)
            except queue.Empty:
                check_workers(processes, len(chunks) - len(results), exited_before_read=exited_before_read)
                continue
            accept(outcome, results, progress)
    finally:
        stop(processes)
        # Chunks left unsent after a failure must not make the interpreter wait at exit for the
        # queue's feeder thread to flush them into a pipe nobody reads.
        todo.cancel_join_thread()
    wall = time.perf_counter() - began
    return make_report(
        job,
        "processes",
        results,
        wall,
        workers=len(processes),
        ipc="queue",
        start_method=start_method,
    )
