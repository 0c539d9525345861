"""Processes: the job's chunks computed by worker processes that talk through one IPC mechanism.

Each worker is a separate interpreter with its own GIL, so CPU-bound chunks run truly in parallel. What
differs between the modules here is only how ranges reach the workers and partial results come back:

====== ========================================== ==============================================
--ipc  module                                     ranges out / results back
====== ========================================== ==============================================
queue  `workers.processes.mp_queue`               one shared `multiprocessing.Queue` each way
pipe   `workers.processes.mp_pipe`                one duplex `Pipe` per worker, fed on demand
pool   `workers.processes.mp_pool`                `ProcessPoolExecutor` (its own queues)
shared `workers.processes.mp_shared`              next-chunk counter and partials in shared memory
manager `workers.processes.mp_manager`            a `Manager` server process's queue and dict
====== ========================================== ==============================================

Every IPC works under every start method (fork, spawn, forkserver). The clock starts before the first
process does, so start-up cost — which differs a lot between start methods — is part of the time.
Everything but the IPC — starting the workers with Ctrl-C held, noticing a dead one, stopping them all
— is `workers.processes.supervise`, written once.

Usage::

    conquer run sum 100_000_000 --on processes --ipc pipe --start-method spawn -v
    conquer compare sum 20_000_000 --executors processes --start-method all

Adding an IPC is one module that is only its IPC, plus its line in `IPC_MODULES`::

    # workers/processes/mp_example.py
    def work(todo, done) -> None:                # a worker: module-level, so spawn can import it
        ignore_sigint()                          # first: Ctrl-C is the parent's to handle
        while (chunk := todo.get()) is not None:
            done.put(attempt(chunk))             # a raising chunk comes back as data

    class Example(Channel):                      # the parent's end (see supervise.Channel)
        def __init__(self, context, job, workers): ...  # set up before the workers start
        def worker(self, number): ...            # (work, its arguments) for worker `number`
        def hand_out(self, processes): ...       # the started workers' first work (Ctrl-C held)
        def collect(self, processes, timeout): ...  # every outcome there is, waiting up to `timeout`
        def close(self): ...                     # after every worker is stopped

    def run(job, *, workers, start_method, progress=None) -> Report:
        return supervise(job, Example, workers=workers, start_method=start_method,
                         progress=progress, ipc="example")

    if TYPE_CHECKING:                            # where mypy checks the module against `Ipc`
        from workers.processes import mp_example as this
        _: Ipc = this

    # here, in IPC_MODULES:
    "example": "workers.processes.mp_example",

tests/workers/test_adding_an_ipc.py does exactly that with an IPC of its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tasks import Job
from workers.base import Executor, OnChunk, Report

#: The IPC mechanisms, each one module: the `--ipc` name -> the module. The first is the default.
IPC_MODULES = {
    "queue": "workers.processes.mp_queue",
    "pipe": "workers.processes.mp_pipe",
    "pool": "workers.processes.mp_pool",
    "shared": "workers.processes.mp_shared",
    "manager": "workers.processes.mp_manager",
}


@runtime_checkable
class Ipc(Protocol):
    """What an IPC module provides (mypy checks each: see the end of each module)."""

    def run(self, job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
        """The processes executor's `run` over this IPC, under `start_method`."""
        ...


def run(
    job: Job,
    *,
    workers: int,
    ipc: str = "queue",
    start_method: str = "fork",
    progress: OnChunk | None = None,
) -> Report:
    return load(ipc).run(job, workers=workers, start_method=start_method, progress=progress)


def load(ipc: str) -> Ipc:
    """The module of IPC `ipc`, imported now."""
    module = importlib.import_module(IPC_MODULES[ipc])
    if not isinstance(module, Ipc):  # mypy checks each module; this catches a wrong registry line
        raise TypeError(f"{module.__name__} is registered as an IPC but has no run()")
    return module


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import processes as this

    _: Executor = this
