"""A thread pool: `concurrent.futures.ThreadPoolExecutor` does the queueing and the joining.

The same GIL story as `workers.threads`, with the standard library's executor instead of hand-made
workers. On a failure the chunks not yet started are cancelled.

Usage::

    conquer run download 100 --chunks 100 --on thread-pool --workers 32
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from tasks import Job, split
from workers.base import ChunkFailure, ChunkResult, Executor, OnChunk, Report, attempt, make_report


def run(job: Job, *, workers: int, progress: OnChunk | None = None) -> Report:
    chunks = split(job)
    count = min(workers, len(chunks))
    began = time.perf_counter()
    results: list[ChunkResult] = []
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="pool-worker")
    try:
        futures: list[Future[ChunkResult | ChunkFailure]] = [pool.submit(attempt, chunk) for chunk in chunks]
        if progress:
            for future in futures:
                future.add_done_callback(lambda done: _report(done, progress))
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                outcome = future.result()
                if isinstance(outcome, ChunkFailure):
                    raise outcome.to_exception()
                results.append(outcome)
    finally:
        # On success there is nothing left to cancel; on a failure or Ctrl-C, unstarted chunks never run.
        pool.shutdown(wait=True, cancel_futures=True)
    return make_report(job, "thread-pool", results, time.perf_counter() - began, workers=count)


def _report(future: Future[ChunkResult | ChunkFailure], progress: OnChunk) -> None:
    if not future.cancelled() and isinstance(outcome := future.result(), ChunkResult):
        progress(outcome)


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import thread_pool as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Executor = this
