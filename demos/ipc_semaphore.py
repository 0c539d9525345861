"""IPC by semaphore: six worker processes each download a chunk, but a ``Semaphore(2)`` lets at most two
download at once — as a server allowing two connections per client would; the partials come back on a
queue.

A semaphore is a counter shared by processes: ``acquire()`` takes one of its permits or waits for one,
``release()`` gives it back. It carries no data; it limits how many may do something at once. To show
the limit holds, each worker also counts itself in and out of a shared ``Value`` (under that Value's
lock) and records the highest count seen.

Usage::

    conquer demo ipc-semaphore
    conquer demo ipc-semaphore --workers 8 --permits 3
    python -m demos.ipc_semaphore
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.queues import Queue
from typing import Any

from demos.common import JOIN_TIMEOUT_S, argument_parser, run, running, say, verify
from tasks import Job, chunk_at, run_chunk


def work(job: Job, index: int, permits: Any, inside: Any, peak: Any, done: Queue[tuple[int, int]]) -> None:
    chunk = chunk_at(job, index)
    if not permits.acquire(timeout=JOIN_TIMEOUT_S):
        raise SystemExit("no permit within the deadline")
    try:
        # inside's lock guards inside and peak together: peak is the most workers ever inside at once.
        with inside.get_lock():
            inside.value += 1
            peak.value = max(peak.value, inside.value)
            now = inside.value
        say(f"got a permit ({now} downloading now), downloading chunk {index}")
        partial = run_chunk(chunk)
        with inside.get_lock():
            inside.value -= 1
    finally:
        permits.release()
    done.put((index, partial))


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--workers", type=int, default=6, help="worker processes, one chunk each")
    parser.add_argument("--permits", type=int, default=2, help="how many may download at once")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each item takes")
    arguments = parser.parse_args()
    job = Job("download", arguments.workers * 4, arguments.workers, latency=arguments.latency)
    permits = multiprocessing.Semaphore(arguments.permits)
    inside, peak = multiprocessing.Value("i", 0), multiprocessing.Value("i", 0)
    done: Queue[tuple[int, int]] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=work, args=(job, index, permits, inside, peak, done))
        for index in range(job.chunks)
    ]
    began = time.perf_counter()
    with running(workers):
        partials = dict(done.get(timeout=JOIN_TIMEOUT_S) for _ in range(job.chunks))
    wall = time.perf_counter() - began
    say(f"at most {peak.value} downloaded at once ({arguments.permits} permits), {wall:.2f} s in all")
    one_chunk = chunk_at(job, 0).size * job.latency
    rounds = -(-job.chunks // arguments.permits)
    say(
        f"a chunk takes {one_chunk:.2f} s: {job.chunks} chunks through {arguments.permits} permits is"
        f" at least {rounds} rounds, {rounds * one_chunk:.2f} s"
    )
    verified = verify(job, sum(partials.values()))
    return 0 if verified and peak.value <= arguments.permits else 1


if __name__ == "__main__":
    run(main)
