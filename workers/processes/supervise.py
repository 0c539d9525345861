"""What every process-based IPC shares: children leave Ctrl-C to the parent, the parent notices a
dead worker instead of waiting forever, and no child outlives the run."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import forkserver, resource_tracker
from multiprocessing.process import BaseProcess
from typing import Any

from workers.base import ChunkFailure, ChunkResult, Progress, WorkerLost

#: How often a waiting parent looks at its workers' health. Results are taken as soon as they arrive;
#: this only bounds how late a dead worker is noticed.
POLL_S = 0.2

#: How long a worker gets to exit after SIGTERM before it is sent SIGKILL.
GRACE_S = 2.0


def get_context(start_method: str) -> Any:
    """multiprocessing's context for `start_method`: the same API as the `multiprocessing` module, bound
    to one start method. (Typed Any: typeshed types only literal method names.)"""
    return multiprocessing.get_context(start_method)


def ignore_sigint() -> None:
    """Run first in every worker: Ctrl-C reaches the whole process group, and only the parent should
    act on it — by stopping the workers — instead of every child printing its own traceback.

    The child was started with SIGINT blocked (`ctrl_c_held`), so a Ctrl-C that came while it booted
    is still pending: ignoring before unblocking discards it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def ctrl_c_held(start_method: str) -> Iterator[None]:
    """Start workers (and hand out work) inside this block: SIGINT is blocked in this thread
    meanwhile, and a child inherits the blocked mask through fork and exec, so it cannot be
    interrupted half-way through booting, before `ignore_sigint` runs. A Ctrl-C pressed meanwhile
    reaches this process as soon as the block ends (and the caller's clean-up stops the workers)."""
    if start_method != "fork":
        # Starting the resource tracker (spawn and forkserver need it) *unblocks* SIGINT when done,
        # which would undo the block below for every worker started after it: start it first.
        resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        if start_method == "forkserver":
            # Workers are forked from the fork server and inherit its mask: start it blocked too.
            forkserver.ensure_running()
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def describe_exit(exitcode: int) -> str:
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"


def exited(processes: Sequence[BaseProcess]) -> bool:
    return all(process.exitcode is not None for process in processes)


def check_workers(processes: Sequence[BaseProcess], missing: int, *, exited_before_read: bool) -> None:
    """Raise WorkerLost if a worker died, or if all had exited before the caller's last look for
    results (`exited_before_read`, taken *before* that look) and `missing` results never came.

    The snapshot matters: a worker may deliver its last result and exit between the caller's look
    and this check; judged by exit codes read now, that worker's result would count as lost.
    """
    for process in processes:
        if process.exitcode not in (None, 0):
            raise WorkerLost(
                f"worker {process.name} (pid {process.pid}) {describe_exit(process.exitcode)} "
                f"with {missing} chunk(s) unfinished"
            )
    if missing and exited_before_read:
        raise WorkerLost(f"all workers exited with {missing} chunk(s) unfinished")


def accept(
    outcome: ChunkResult | ChunkFailure, results: list[ChunkResult], progress: Progress | None
) -> None:
    """Keep a chunk's result, or raise its failure (the caller's `finally` stops the workers)."""
    if isinstance(outcome, ChunkFailure):
        raise outcome.to_exception()
    results.append(outcome)
    if progress:
        progress(outcome)


def stop(processes: Iterable[BaseProcess]) -> None:
    """Reap every worker: those still running get SIGTERM, then SIGKILL after GRACE_S."""
    processes = list(processes)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
