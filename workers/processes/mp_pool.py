"""Processes + a process pool: `concurrent.futures.ProcessPoolExecutor` does the queueing.

The pool hides the IPC (it uses a call queue and a result queue internally) and, unlike
`multiprocessing.Pool`, notices a worker that dies: its futures fail with `BrokenProcessPool` instead of
waiting forever.

Usage::

    conquer run sum 100_000_000 --on processes --ipc pool
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from tasks import Job, split
from workers.base import (
    ChunkFailure,
    ChunkResult,
    OnChunk,
    Report,
    WorkerLost,
    attempt,
    make_report,
)
from workers.processes.supervise import (
    accept,
    ctrl_c_held,
    get_context,
    ignore_sigint,
    sigterm_as_interrupt,
    stop,
)


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    """The pool supervises its own processes; what is left to do here is what `supervise` does for
    the other IPCs: Ctrl-C held while they start, SIGTERM unwinding like Ctrl-C, and a failed run
    stopping them without waiting for their chunks."""
    context = get_context(start_method)
    chunks = split(job)
    count = min(workers, len(chunks))
    began = time.perf_counter()
    results: list[ChunkResult] = []
    with sigterm_as_interrupt():
        pool = ProcessPoolExecutor(max_workers=count, mp_context=context, initializer=ignore_sigint)
        finished = False
        try:
            with ctrl_c_held(start_method):  # the pool starts its processes on the first submits
                pending: set[Future[ChunkResult | ChunkFailure]] = {
                    pool.submit(attempt, chunk) for chunk in chunks
                }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    accept(future.result(), results, progress)
            finished = True
        except BrokenProcessPool as error:
            raise WorkerLost(f"a pool worker died mid-job: {error}") from None
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:
                _terminate(pool)
    wall = time.perf_counter() - began
    return make_report(job, "processes", results, wall, workers=count, ipc="pool", start_method=start_method)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool whose run failed without waiting for its running chunks to finish."""
    processes = list((pool._processes or {}).values())  # no public way to reach them before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    stop(processes)


if TYPE_CHECKING:  # mypy checks this module against the IPC interface (workers.processes)
    from workers.processes import Ipc
    from workers.processes import mp_pool as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Ipc = this
