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

Usage::

    conquer run sum 100_000_000 --on processes --ipc pipe --start-method spawn -v
    conquer compare sum 20_000_000 --executors processes --start-method all
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tasks import Job
from workers.base import Executor, Progress, Report

MODULES = {
    "queue": "workers.processes.mp_queue",
    "pipe": "workers.processes.mp_pipe",
    "pool": "workers.processes.mp_pool",
    "shared": "workers.processes.mp_shared",
    "manager": "workers.processes.mp_manager",
}


def run(
    job: Job,
    *,
    workers: int,
    ipc: str = "queue",
    start_method: str = "fork",
    progress: Progress | None = None,
) -> Report:
    module = importlib.import_module(MODULES[ipc])
    report: Report = module.run(job, workers=workers, start_method=start_method, progress=progress)
    return report


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import processes as this

    _: Executor = this
