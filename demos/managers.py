"""Processes on several machines: ``multiprocessing.managers`` serves a task queue and a result queue over
TCP with an authkey, and workers connect by address — the ``managers`` executor — and what a broker adds.

The chapter ends by pointing here. A ``BaseManager`` server owns two ordinary queues; anyone who knows
its address and key can connect and use them, from this machine or another. That is enough to spread
one job over machines (``conquer run sum 1e7 --on managers``), and this demo shows it work, including a
worker started as a separate command given only the address and key. It then shows what it lacks, which
is what a broker such as Redis with Celery provides: *redelivery* (a chunk taken by a worker that dies
is lost with it, so the run can only fail — Celery with ``acks_late`` hands it to another worker),
*persistence* (the queues live in one process's memory; Redis can keep them on disk), *monitoring*
(nobody can ask which workers exist or what they are doing — Flower and ``celery inspect`` can), and
*many producers* (any client may put work on the queue, but results come back on one shared queue with
no per-job routing — Celery keeps each job's results apart in its result backend).

Usage::

    conquer demo managers
    python -m demos.managers
    conquer run sum 10_000_000 --on managers -v
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections import defaultdict

import workers
from demos.common import JOIN_TIMEOUT_S, argument_parser, heading, run, say, verify
from tasks import Job, chunk_at, split
from workers.base import ChunkResult
from workers.managers import AUTHKEY_ENV, serving, work
from workers.processes.supervise import get_context


def same_job_on_managers(job: Job) -> bool:
    heading(f"{job.describe()} on the managers executor (2 workers joining by address)")
    report = workers.run(job, workers.plan(job.kind, "managers", 2))
    say(f"the server listened on {report.details['address']} with {report.details['authkey']}")
    ran: dict[tuple[str, int], list[int]] = defaultdict(list)
    for chunk in report.chunks:
        ran[(chunk.host, chunk.pid)].append(chunk.index)
    for (host, pid), indexes in ran.items():
        say(f"worker pid {pid} on host {host} ran chunks {indexes}")
    return verify(job, report.value)


def a_worker_started_by_hand(job: Job) -> bool:
    heading("a worker given only the address and the key, as on another machine")
    context = get_context(workers.default_start_method())
    with serving(context) as (manager, authkey):
        host, port = manager.address  # type: ignore[misc,str-unpack]
        todo, done = manager.todo(), manager.done()
        for chunk in split(job):
            todo.put(chunk.to_message())
        todo.put(None)  # this worker's "no more work"
        command = [sys.executable, "-m", "workers.managers", "worker", f"{host}:{port}"]
        say(f"running: {AUTHKEY_ENV}=<the key, in hex> {' '.join(command[1:])}")
        finished = subprocess.run(
            command,
            env={**os.environ, AUTHKEY_ENV: authkey.hex()},
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT_S,
            check=False,
        )
        for line in finished.stdout.splitlines():
            print(f"    {line}")
        results: list[ChunkResult] = [done.get(timeout=JOIN_TIMEOUT_S) for _ in range(job.chunks)]
    say(f"it ran all {len(results)} chunks as pid {results[0].pid}, then exited with {finished.returncode}")
    return verify(job, sum(result.value for result in results))


def no_redelivery() -> None:
    heading("no redelivery: a worker takes a chunk and dies")
    context = get_context(workers.default_start_method())
    with serving(context) as (manager, authkey):
        todo, done = manager.todo(), manager.done()
        slow = Job("download", 8, 1, latency=0.5)  # one chunk of 4 s: the kill lands while it runs
        todo.put(chunk_at(slow, 0).to_message())
        worker = context.Process(target=work, args=(manager.address, authkey), name="doomed-worker")
        worker.start()
        try:
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            while todo.qsize() and time.monotonic() < deadline:  # until the worker has taken the chunk
                time.sleep(0.01)
            say(f"worker pid {worker.pid} took the only chunk: todo holds {todo.qsize()}")
        finally:
            worker.kill()
            worker.join(JOIN_TIMEOUT_S)
        say(f"killed it while it held the chunk: todo holds {todo.qsize()}, done holds {done.qsize()}")
        say("the chunk is gone")
        say("the executor can only fail the run (WorkerLost); Celery with acks_late would redeliver it")


def no_persistence() -> None:
    heading("no persistence: the queues live in the server process's memory")
    context = get_context(workers.default_start_method())
    before = set(multiprocessing.active_children())
    with serving(context) as (manager, _):
        (server,) = set(multiprocessing.active_children()) - before
        todo = manager.todo()
        for chunk in split(Job("sum", 1000, 5)):
            todo.put(chunk.to_message())
        say(f"5 chunks queued in the server, pid {server.pid}: qsize() = {todo.qsize()}")
        server.kill()
        server.join(JOIN_TIMEOUT_S)
        try:
            todo.qsize()
        except (EOFError, ConnectionError) as error:
            say(f"after the server died: {type(error).__name__} — the 5 chunks died with it")


def main() -> int:
    argument_parser(__spec__.name, __doc__).parse_args()
    job = Job("sum", 2_000_000, 8)
    verified = same_job_on_managers(job) and a_worker_started_by_hand(job)
    no_redelivery()
    no_persistence()
    heading("what a broker adds")
    for lack, broker in (
        ("a taken chunk dies with its worker", "redelivery: acks_late + reject_on_worker_lost"),
        ("queues die with the server process", "persistence: Redis AOF on a volume"),
        ("no list of workers, no task states", "monitoring: Flower, celery inspect, task events"),
        ("one results queue shared by everyone", "many producers: per-job results in a result backend"),
    ):
        say(f"managers: {lack:<40} broker: {broker}")
    return 0 if verified else 1


if __name__ == "__main__":
    run(main)
