"""What every process-based executor shares, written once: `supervise` starts the workers, drives one
IPC `Channel`, notices a dead worker instead of waiting forever, and leaves no child behind.

The guarantees, whatever the IPC and start method:

- Ctrl-C is the parent's: children start with SIGINT blocked (`ctrl_c_held`) and ignore it
  (`ignore_sigint`), so one Ctrl-C gives one line, not a traceback per child.
- A worker that dies (killed, crashed) ends the run with `WorkerLost` within about `POLL_S`.
- A chunk that raises ends the run with `ChunkError` naming the chunk's range.
- No worker outlives the run: they are stopped in a `finally`, after a success, a failure, Ctrl-C, or
  SIGTERM (which unwinds a run like Ctrl-C: `sigterm_as_interrupt`).

What an IPC adds is only its `Channel`: how chunks reach the workers and outcomes come back. Adding one
is described in `workers.processes`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from multiprocessing import forkserver, resource_tracker
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType, TracebackType
from typing import Any

from tasks import Job
from workers.base import ChunkFailure, ChunkResult, OnChunk, Report, WorkerLost, make_report

#: How often a waiting parent looks at its workers' health. Results are taken as soon as they arrive;
#: this only bounds how late a dead worker is noticed.
POLL_S = 0.2

#: How long a worker gets to exit after SIGTERM before it is sent SIGKILL.
GRACE_S = 2.0

#: Blocked while workers start (`ctrl_c_held`), until each worker has set itself up (`ignore_sigint`).
HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

#: What comes back from a worker for one chunk: its result, or its failure as data.
Outcome = ChunkResult | ChunkFailure

#: What a worker process runs: a module-level function (spawn and forkserver import it by name in the
#: child) and its arguments (that worker's ends of the channel; they must pickle under spawn).
WorkerTarget = tuple[Callable[..., None], tuple[Any, ...]]


class Channel(ABC):
    """The parent's end of one run's IPC. `supervise` starts, watches and stops the processes; a
    channel never does. It is a context manager: set up before the workers start, torn down (`close`)
    after every one of them has been stopped."""

    @abstractmethod
    def worker(self, number: int) -> WorkerTarget:
        """What worker `number` runs. The function calls `ignore_sigint()` first and answers each
        chunk with `attempt(chunk)`, so that a raising chunk comes back as a `ChunkFailure`."""

    def hand_out(self, processes: Sequence[BaseProcess]) -> None:
        """Give the just-started workers their work. Runs with Ctrl-C held: it must not block."""
        del processes  # by default, the work was handed out when the channel was set up

    @abstractmethod
    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> Iterable[Outcome]:
        """The outcomes that have arrived: wait up to `timeout` for the first, then take *every* one
        there is. `supervise` then judges the workers by exit codes read before this call; an outcome
        left unread would look lost."""

    def details(self) -> dict[str, Any]:
        """Facts about the channel for the report (read after the workers are stopped)."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional: most channels have nothing to release)
        """Release the channel; every worker has been stopped."""

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


#: How `supervise` gets a channel: called with (multiprocessing context, job, number of workers). A
#: `Channel` subclass is one; a `@contextmanager` function yielding a channel is another.
OpenChannel = Callable[[Any, Job, int], AbstractContextManager[Channel]]


def supervise(
    job: Job,
    open_channel: OpenChannel,
    *,
    workers: int,
    start_method: str,
    progress: OnChunk | None,
    executor: str = "processes",
    ipc: str | None = None,
) -> Report:
    """Run every chunk of `job` on `workers` processes (at most one per chunk) that talk through
    `open_channel`'s IPC, and return the report. The processes executor names its `ipc` (and so its
    start method) in the report; an executor without those options (managers) names neither."""
    context = get_context(start_method)
    count = min(workers, job.chunks)
    results: list[ChunkResult] = []
    began = time.perf_counter()  # before the channel and the processes: their start-up is part of it
    with sigterm_as_interrupt(), open_channel(context, job, count) as channel:
        targets = [channel.worker(number) for number in range(count)]
        processes = [
            context.Process(target=target, args=args, name=f"{ipc or executor}-worker-{number}", daemon=True)
            for number, (target, args) in enumerate(targets)
        ]
        try:
            with ctrl_c_held(start_method):
                for process in processes:
                    process.start()
                channel.hand_out(processes)
            while len(results) < job.chunks:
                exited_before_read = exited(processes)
                for outcome in channel.collect(processes, POLL_S):
                    accept(outcome, results, progress)
                if len(results) < job.chunks:
                    check_workers(processes, job.chunks - len(results), exited_before_read=exited_before_read)
        finally:
            stop(processes)
        details = channel.details()
    return make_report(
        job,
        executor,
        results,
        time.perf_counter() - began,
        workers=count,
        ipc=ipc,
        start_method=start_method if ipc else None,
        details=details,
    )


def get_context(start_method: str) -> Any:
    """multiprocessing's context for `start_method`: the same API as the `multiprocessing` module, bound
    to one start method. (Typed Any: typeshed types only literal method names.)"""
    return multiprocessing.get_context(start_method)


def ignore_sigint() -> None:
    """Run first in every worker: Ctrl-C reaches the whole process group, and only the parent should
    act on it — by stopping the workers — instead of every child printing its own traceback.

    The child was started with SIGINT blocked (`ctrl_c_held`), so a Ctrl-C that came while it booted
    is still pending: ignoring before unblocking discards it. SIGTERM, held with it, is unblocked with
    its meaning kept: it is how `stop` ends a worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


@contextmanager
def ctrl_c_held(start_method: str) -> Iterator[None]:
    """Start workers (and hand out work) inside this block: SIGINT is blocked in this thread
    meanwhile, and a child inherits the blocked mask through fork and exec, so it cannot be
    interrupted half-way through booting, before `ignore_sigint` runs. A Ctrl-C pressed meanwhile
    reaches this process as soon as the block ends (and the caller's clean-up stops the workers).
    SIGTERM, which a run takes as Ctrl-C (`sigterm_as_interrupt`), is held alike."""
    if start_method != "fork":
        # Starting the resource tracker (spawn and forkserver need it) *unblocks* SIGINT when done,
        # which would undo the block below for every worker started after it: start it first.
        resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        if start_method == "forkserver":
            # Workers are forked from the fork server and inherit its mask: start it blocked too.
            forkserver.ensure_running()
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Meanwhile, SIGTERM to this process unwinds like Ctrl-C (KeyboardInterrupt), so the `finally`
    that stops the workers runs. By default SIGTERM ends the parent on the spot, and its workers —
    waiting for a next chunk that never comes, or for a manager server nobody stops — live on.

    Only the main thread can set a handler; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def interrupt(signum: int, _frame: FrameType | None) -> Any:
        if os.getpid() != owner:
            # A process forked meanwhile (a worker, or an in-host executor's worker while `compare`
            # runs the Celery stack) inherited this handler: there, SIGTERM — how `stop` ends a
            # worker — keeps its default meaning.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def accept(outcome: ChunkResult | ChunkFailure, results: list[ChunkResult], progress: OnChunk | None) -> None:
    """Keep a chunk's result, or raise its failure (the caller's `finally` stops the workers)."""
    if isinstance(outcome, ChunkFailure):
        raise outcome.to_exception()
    results.append(outcome)
    if progress:
        progress(outcome)


def drain(outcomes: Any, timeout: float) -> list[Outcome]:
    """Everything on a queue of outcomes (a `multiprocessing.Queue`, or a manager's proxy of a
    `queue.Queue`), waiting up to `timeout` for the first."""
    try:
        taken = [outcomes.get(timeout=timeout)]
    except queue.Empty:
        return []
    with suppress(queue.Empty):
        while True:
            taken.append(outcomes.get_nowait())
    return taken


def wait_for_exit(processes: Sequence[BaseProcess], timeout: float) -> None:
    """Sleep up to `timeout`, waking early if a worker exits: how a channel with nothing to wait on
    (a manager's dict, shared memory) paces its looks."""
    running = [process.sentinel for process in processes if process.exitcode is None]
    if running:
        wait(running, timeout)


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
