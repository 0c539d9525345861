"""Processes + one `Pipe` per worker: the parent deals chunks out on demand.

Each worker gets its own duplex pipe. The parent sends every worker one chunk, then waits on all pipes
at once (`multiprocessing.connection.wait`) and answers each result with the next chunk — or `None`
when none are left. Nothing is shared between workers: the parent is the only scheduler.

Usage::

    conquer run primes 2_000_000 --on processes --ipc pipe -v
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection, wait

from tasks import Job, split
from workers.base import ChunkResult, Progress, Report, WorkerLost, attempt, make_report
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


def work(connection: Connection) -> None:
    ignore_sigint()
    try:
        while (chunk := connection.recv()) is not None:
            connection.send(attempt(chunk))
    except (EOFError, BrokenPipeError):
        return  # the parent closed its end: the run is over (it failed or was interrupted)


def run(job: Job, *, workers: int, start_method: str, progress: Progress | None = None) -> Report:
    context = get_context(start_method)
    chunks = split(job)
    began = time.perf_counter()
    pipes = [context.Pipe() for _ in range(min(workers, len(chunks)))]
    processes = [
        context.Process(target=work, args=(child,), name=f"pipe-worker-{number}", daemon=True)
        for number, (_, child) in enumerate(pipes)
    ]
    owner = {parent: process for (parent, _), process in zip(pipes, processes, strict=True)}
    unsent = iter(chunks)
    results: list[ChunkResult] = []
    try:
        with ctrl_c_held(start_method):
            for process in processes:
                process.start()
        for _, child in pipes:
            child.close()  # the parent's copy: without it, a dead worker's pipe never reports EOF
        busy = set(owner)  # pipes whose worker is computing a chunk we are waiting for
        for parent in owner:
            parent.send(next(unsent))
        while len(results) < len(chunks):
            exited_before_read = exited(processes)
            ready = wait(list(busy), timeout=POLL_S)
            if not ready:
                check_workers(processes, len(chunks) - len(results), exited_before_read=exited_before_read)
            for parent in ready:
                assert isinstance(parent, Connection)
                try:
                    outcome = parent.recv()
                    accept(outcome, results, progress)
                    following = next(unsent, None)
                    parent.send(following)  # None tells the worker to exit
                except (EOFError, OSError):  # the worker died: its end of the pipe is gone
                    process = owner[parent]
                    process.join(POLL_S)
                    check_workers([process], len(chunks) - len(results), exited_before_read=False)
                    raise WorkerLost(f"worker {process.name} closed its pipe mid-job") from None
                if following is None:
                    busy.discard(parent)
    finally:
        for parent in owner:
            parent.close()  # a worker still waiting in recv() sees EOF and exits
        stop(processes)
    wall = time.perf_counter() - began
    return make_report(
        job,
        "processes",
        results,
        wall,
        workers=len(processes),
        ipc="pipe",
        start_method=start_method,
    )
