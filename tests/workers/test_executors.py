"""Every executor × IPC × start method returns the exact, verified answer for every kind (celery on an
embedded stack of its own), names the failing chunk's range when one raises, and notices a worker that
dies instead of hanging."""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

import workers
from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import CONQUER, skip_without_redis_server, wait_until
from workers import ChunkError, ChunkResult, DeployingExecutor, Executor, ExecutorSpec, OnChunk, WorkerLost
from workers.processes import IPC_MODULES
from workers.processes.supervise import ctrl_c_held, sigterm_as_interrupt

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
    lock = threading.Lock()  # guards `seen`: progress may be called from any of the executor's threads

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
def test_a_killed_worker_process_fails_the_run_instead_of_hanging(
    executor: str, ipc: str | None, kill_first_worker: OnChunk
) -> None:
    """One worker, SIGKILLed after its first chunk: 15 chunks remain that nobody else can compute, so
    the run must end in WorkerLost — never hang, never report success. (With two workers the survivor
    could finish everything if the killed one held no chunk at that moment, and nothing is lost.)"""
    job = Job("download", 64, 16, latency=0.01)
    with pytest.raises(WorkerLost, match=r"was killed by SIGKILL|closed its pipe|pool worker died"):
        workers.run(job, workers.plan("download", executor, 1, ipc), progress=kill_first_worker)


@pytest.mark.parametrize(
    ("executor", "children"),
    [(["processes", "--ipc", ipc], 3 if ipc == "manager" else 2) for ipc in workers.IPCS]
    + [(["managers"], 3)]
    # Spawned workers take ~0.1 s to boot: SIGTERM lands while they do (or while the parent starts
    # them, with signals held), and must still stop them all.
    + [(["processes", "--ipc", "pipe", "--start-method", "spawn"], 2)],
    ids=[*workers.IPCS, "managers", "pipe-spawn-booting"],
)
def test_sigterm_stops_every_worker(executor: list[str], children: int) -> None:
    """SIGTERM to `conquer` alone (as `kill` or a service manager sends it) unwinds the run like Ctrl-C:
    by default it would end the parent on the spot, leaving workers that wait for a next chunk — or a
    manager server — forever. `children`: the two workers, and the server where there is one."""
    command = ["run", "download", "400", "--chunks", "40", "--latency", "0.05", "--workers", "2"]
    process = subprocess.Popen(
        [CONQUER, *command, "--on", *executor], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    parent = psutil.Process(process.pid)
    started: list[psutil.Process] = []
    try:
        wait_until(lambda: len(parent.children()) >= children, 20, "the workers never started")
        started = parent.children(recursive=True)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        _, alive = psutil.wait_procs(started, timeout=5)
    finally:
        for leftover in [process, *started]:  # a failing test leaves nothing running
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
    assert not alive, f"left behind: {alive}"
    assert process.returncode == ExitCode.INTERRUPTED
    assert stderr.strip() == "conquer: interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_wait_for_the_workers_to_be_started(signum: signal.Signals) -> None:
    """Inside `ctrl_c_held` (where workers start and get their chunks) neither signal interrupts: it
    arrives, as KeyboardInterrupt, when the block ends."""
    held_until: list[str] = []

    def signal_inside_the_block() -> None:
        with ctrl_c_held("fork"):
            os.kill(os.getpid(), signum)
            held_until.append("the end of the block")

    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):  # not raised: the signal was lost
        signal_inside_the_block()
    assert held_until == ["the end of the block"]


def test_every_registered_executor_is_an_executor_and_only_celery_deploys() -> None:
    """The runtime half of the interface; mypy checks each module's signatures (see the next test)."""
    deploying = {name for name in workers.EXECUTORS if isinstance(workers.load(name), DeployingExecutor)}
    assert all(isinstance(workers.load(name), Executor) for name in workers.EXECUTORS)
    assert deploying == {"celery"}


def test_a_registered_module_without_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(workers.EXECUTORS, "nothing", ExecutorSpec("nothing", "tasks.faults", "no run()"))
    monkeypatch.setitem(IPC_MODULES, "nothing", "tasks.faults")
    with pytest.raises(TypeError, match=r"tasks\.faults is registered as an executor but has no run\(\)"):
        workers.load("nothing")
    with pytest.raises(TypeError, match=r"tasks\.faults is registered as an IPC but has no run\(\)"):
        workers.run(Job("sum", 10, 2), workers.plan("sum", "processes", 1, "nothing"))


def checked_against(module: str) -> set[str]:
    """The protocols `module` binds itself to under TYPE_CHECKING (`_: Executor = this`): where mypy
    checks it against the interface."""
    tree = ast.parse(Path(importlib.import_module(module).__file__ or "").read_text())
    return {
        ast.unparse(statement.annotation)
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        if isinstance(statement, ast.AnnAssign) and ast.unparse(statement.value or block.test) == "this"
    }


@pytest.mark.parametrize(
    ("module", "protocol"),
    [
        (spec.module, "DeployingExecutor[Deployment]" if spec.name == "celery" else "Executor")
        for spec in workers.EXECUTORS.values()
    ]
    + [(module, "Ipc") for module in IPC_MODULES.values()],
)
def test_every_executor_and_ipc_module_is_bound_to_its_protocol_for_mypy(module: str, protocol: str) -> None:
    assert checked_against(module) == {protocol}
