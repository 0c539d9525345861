"""asyncio: W coroutines on one event loop in one thread, for I/O-bound jobs.

Each worker coroutine takes chunks from an `asyncio.Queue`; a chunk's waits are `await`s, so while one
waits the loop runs the others. No threads, no processes, no locks: only one coroutine runs at a time
and it gives up control only at an `await`.

Usage::

    conquer run download 100 --chunks 100 --on asyncio --workers 32
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from tasks import Chunk, Job, run_chunk_async, split
from workers.base import ChunkResult, Executor, OnChunk, Report, failure, make_report, record


async def _execute(chunk: Chunk, worker: str) -> ChunkResult:
    started = time.time()
    return record(chunk, await run_chunk_async(chunk), started, worker)


async def _run(job: Job, count: int, progress: OnChunk | None) -> list[ChunkResult]:
    todo: asyncio.Queue[Chunk] = asyncio.Queue()
    for chunk in split(job):
        todo.put_nowait(chunk)
    results: list[ChunkResult] = []

    async def worker(name: str) -> None:
        while not todo.empty():
            chunk = todo.get_nowait()
            try:
                result = await _execute(chunk, name)
            except Exception as error:
                raise failure(chunk, error).to_exception() from error
            results.append(result)
            if progress:
                progress(result)

    # A TaskGroup cancels the other workers as soon as one raises, and never leaves a task behind.
    async with asyncio.TaskGroup() as group:
        for number in range(count):
            group.create_task(worker(f"coroutine-{number}"))
    return results


def run(job: Job, *, workers: int, progress: OnChunk | None = None) -> Report:
    count = min(workers, job.chunks)
    began = time.perf_counter()
    try:
        results = asyncio.run(_run(job, count, progress))
    except ExceptionGroup as group:
        raise group.exceptions[0] from None
    return make_report(job, "asyncio", results, time.perf_counter() - began, workers=count)


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import coroutines as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Executor = this
