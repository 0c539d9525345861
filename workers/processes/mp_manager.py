"""Processes + a `Manager`: a server process holds the work queue and the results dict.

`SyncManager` starts one extra process that owns real Python objects; workers and parent hold proxies,
and every `get()` or `results[i] = ...` is a request over a socket to that server. It is the most
flexible shared state (any picklable object, even across machines — see `workers.managers`) and the
slowest: each operation is a round trip.

Usage::

    conquer run sum 100_000_000 --on processes --ipc manager -v
"""

from __future__ import annotations

import time
from multiprocessing.connection import wait
from multiprocessing.managers import DictProxy, SyncManager
from queue import Queue
from typing import Any

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


def work(todo: Queue[Chunk | None], results: DictProxy[int, Any]) -> None:
    ignore_sigint()
    while (chunk := todo.get()) is not None:
        results[chunk.index] = attempt(chunk)


def run(job: Job, *, workers: int, start_method: str, progress: Progress | None = None) -> Report:
    context = get_context(start_method)
    chunks = split(job)
    began = time.perf_counter()
    manager = SyncManager(ctx=context)
    with ctrl_c_held(start_method):
        manager.start(ignore_sigint)
    collected: list[ChunkResult] = []
    processes = []
    try:
        todo: Queue[Chunk | None] = manager.Queue()
        results: DictProxy[int, ChunkResult | ChunkFailure] = manager.dict()
        for chunk in chunks:
            todo.put(chunk)
        processes = [
            context.Process(target=work, args=(todo, results), name=f"manager-worker-{number}", daemon=True)
            for number in range(min(workers, len(chunks)))
        ]
        with ctrl_c_held(start_method):
            for process in processes:
                process.start()
        for _ in processes:
            todo.put(None)
        seen: set[int] = set()
        while len(seen) < len(chunks):
            running = [process.sentinel for process in processes if process.exitcode is None]
            if running:
                wait(running, POLL_S)
            exited_before_read = exited(processes)
            # keys(): one round trip to the manager for the list, where iterating the proxy is one per key.
            fresh = [index for index in results.keys() if index not in seen]  # noqa: SIM118
            for index in sorted(fresh):
                seen.add(index)
                accept(results[index], collected, progress)
            check_workers(processes, len(chunks) - len(seen), exited_before_read=exited_before_read)
    finally:
        stop(processes)
        manager.shutdown()
    wall = time.perf_counter() - began
    return make_report(
        job,
        "processes",
        collected,
        wall,
        workers=len(processes),
        ipc="manager",
        start_method=start_method,
    )
