"""Every executor × IPC × start method returns the exact, verified answer for every kind (celery on an
embedded stack of its own), names the failing chunk's range when one raises, and notices a worker that
dies instead of hanging."""

from __future__ import annotations

import os
import signal
import threading

import pytest

import workers
from tasks import Job, check
from tests.conftest import skip_without_redis_server
from workers import ChunkError, ChunkResult, WorkerLost

#: Small jobs: the point is exactness everywhere, not speed. Download waits 2 ms per item.
JOBS = {
    "sum": Job("sum", 200_003, 7),
    "primes": Job("primes", 20_011, 6),
    "download": Job("download", 24, 6, latency=0.002),
}

#: Executors whose workers are threads or coroutines of the calling process; every other one runs its
#: chunks in other processes.
IN_THIS_PROCESS = {"serial", "threads", "thread-pool", "asyncio"}

PLANS = [
    (kind, plan)
    for kind in JOBS
    for plan in workers.variants(kind, 3, start_methods=list(workers.START_METHODS))
]


def plan_id(case: tuple[str, workers.Plan]) -> str:
    kind, plan = case
    return "-".join(str(part) for part in (kind, plan.executor, plan.ipc, plan.start_method) if part)


def test_the_matrix_covers_every_executor_ipc_and_start_method() -> None:
    combos = {(plan.executor, plan.ipc, plan.start_method) for _, plan in PLANS}
    for ipc in workers.IPCS:
        for method in workers.START_METHODS:
            assert ("processes", ipc, method) in combos
    assert {executor for executor, _, _ in combos} == set(workers.EXECUTORS)


@pytest.mark.parametrize("case", PLANS, ids=plan_id)
def test_exact_verified_answer(case: tuple[str, workers.Plan]) -> None:
    kind, plan = case
    if plan.executor == "celery":
        skip_without_redis_server()
    job = JOBS[kind]
    seen: list[ChunkResult] = []
    lock = threading.Lock()

    def progress(result: ChunkResult) -> None:
        with lock:
            seen.append(result)

    report = workers.run(job, plan, progress=progress)
    assert report.value == check(job)
    assert report.verified
    assert [chunk.index for chunk in report.chunks] == list(range(job.chunks))
    assert sorted(result.index for result in seen) == list(range(job.chunks))
    assert all(chunk.ended >= chunk.started for chunk in report.chunks)
    pids = {chunk.pid for chunk in report.chunks}
    if plan.executor in IN_THIS_PROCESS:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids, "chunks must run in worker processes"


@pytest.mark.parametrize("case", [c for c in PLANS if c[0] == "download"], ids=plan_id)
def test_a_raising_chunk_fails_the_run_naming_its_range(case: tuple[str, workers.Plan]) -> None:
    _, plan = case
    if plan.executor == "celery":
        skip_without_redis_server()
    job = Job("download", 24, 6, latency=0.002, fail_at=10)
    with pytest.raises(ChunkError, match=r"chunk 2 \[9, 13\) failed: InjectedFault"):
        workers.run(job, plan)


@pytest.mark.parametrize(
    ("executor", "ipc"), [("processes", ipc) for ipc in workers.IPCS] + [("managers", None)]
)
def test_a_killed_worker_process_fails_the_run_instead_of_hanging(executor: str, ipc: str | None) -> None:
    """One worker, SIGKILLed after its first chunk: 15 chunks remain that nobody else can compute, so
    the run must end in WorkerLost — never hang, never report success. (With two workers the survivor
    could finish everything if the killed one held no chunk at that moment, and nothing is lost.)"""
    job = Job("download", 64, 16, latency=0.01)
    killed: list[int] = []

    def kill_first_worker(result: ChunkResult) -> None:
        if not killed:
            killed.append(result.pid)
            os.kill(result.pid, signal.SIGKILL)

    with pytest.raises(WorkerLost, match=r"was killed by SIGKILL|closed its pipe|pool worker died"):
        workers.run(job, workers.plan("download", executor, 1, ipc), progress=kill_first_worker)
