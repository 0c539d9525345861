"""Adding an IPC is one short module and one registry line (see `workers.processes`): the first half
of this file is such a module, registered by the tests only, and the IPC gets every guarantee of the
product's IPCs — exact answers under every start method, a raising chunk named by its range, a killed
worker noticed — from `workers.processes.supervise`, without a line of its own for them.

The IPC, "dealt": every worker is given its share of the chunks up front, as arguments (worker i of W
takes chunks i, i+W, ...), and all of them send their outcomes back on one shared one-way pipe."""

from __future__ import annotations

import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

import workers
from tasks import Chunk, Job, check, split
from workers import ChunkError, ChunkResult, Report, WorkerLost
from workers.base import OnChunk, attempt
from workers.processes import IPC_MODULES
from workers.processes.supervise import Channel, Outcome, WorkerTarget, ignore_sigint, supervise

# ------------------------------------------------------------------ the IPC module (as in the product)


def work(chunks: list[Chunk], results: Connection, lock: Any) -> None:
    ignore_sigint()
    for chunk in chunks:
        outcome = attempt(chunk)
        with lock:
            results.send(outcome)


class Dealt(Channel):
    def __init__(self, context: Any, job: Job, workers: int) -> None:
        self.chunks, self.workers = split(job), workers
        self.reader, self.writer = context.Pipe(duplex=False)
        # Guards the pipe's write end: one message at a time, as two long ones written at once by two
        # workers would interleave.
        self.lock = context.Lock()

    def worker(self, number: int) -> WorkerTarget:
        return work, (self.chunks[number :: self.workers], self.writer, self.lock)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        outcomes = []
        ready = self.reader.poll(timeout)
        while ready:
            outcomes.append(self.reader.recv())
            ready = self.reader.poll(0)
        return outcomes

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def run(job: Job, *, workers: int, start_method: str, progress: OnChunk | None = None) -> Report:
    return supervise(job, Dealt, workers=workers, start_method=start_method, progress=progress, ipc="dealt")


# ------------------------------------------------------------------------------------------ the tests


@pytest.fixture(autouse=True)
def dealt_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry line, for these tests only. A spawned or forkserver child imports `work` by its
    module's name, so this file must be importable there: its root goes on the path children get."""
    monkeypatch.setitem(IPC_MODULES, "dealt", __name__)
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))


@pytest.mark.parametrize("start_method", workers.START_METHODS)
def test_a_new_ipc_computes_the_exact_answer_under_every_start_method(start_method: str) -> None:
    job = Job("primes", 20_011, 7)
    seen: list[ChunkResult] = []
    plan = workers.plan("primes", "processes", 3, "dealt", start_method)
    report = workers.run(job, plan, progress=seen.append)
    assert (report.ipc, report.start_method) == ("dealt", start_method)
    assert report.value == check(job)
    assert report.verified
    assert sorted(result.index for result in seen) == list(range(job.chunks))
    pids = {chunk.pid for chunk in report.chunks}
    assert os.getpid() not in pids
    assert len(pids) == 3, "each worker ran its own share"


def test_a_new_ipc_names_the_raising_chunk() -> None:
    job = Job("download", 24, 6, latency=0.002, fail_at=10)
    with pytest.raises(ChunkError, match=r"chunk 2 \[9, 13\) failed: InjectedFault"):
        workers.run(job, workers.plan("download", "processes", 2, "dealt"))


def test_a_new_ipc_notices_a_killed_worker(kill_first_worker: OnChunk) -> None:
    job = Job("download", 64, 16, latency=0.01)
    with pytest.raises(WorkerLost, match=r"was killed by SIGKILL with \d+ chunk\(s\) unfinished"):
        workers.run(job, workers.plan("download", "processes", 1, "dealt"), progress=kill_first_worker)
