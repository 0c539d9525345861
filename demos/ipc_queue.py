"""IPC by message queue: ranges go out on one ``multiprocessing.Queue``, partial sums come back on
another; whichever worker is free takes the next range.

A ``multiprocessing.Queue`` is a pipe plus a lock plus a feeder thread: ``put()`` hands the object to
the feeder thread, which pickles it into the pipe; ``get()`` unpickles the next one. Unlike a pipe, any
number of processes may put and get. The workers stop at a sentinel (``None``, one per worker); the
parent takes exactly as many results as it sent ranges, each ``get`` with a deadline (``empty()`` is no
way to know that all results are in: one may still be in a feeder thread).

Usage::

    conquer demo ipc-queue
    conquer demo ipc-queue --workers 2 --chunks 8
    python -m demos.ipc_queue
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from typing import Any

from demos.common import JOIN_TIMEOUT_S, add_job_options, argument_parser, run, running, say, verify
from tasks import Chunk, Job, run_chunk, split


def work(todo: Queue[dict[str, Any] | None], done: Queue[tuple[int, int]]) -> None:
    taken = 0
    while (message := todo.get()) is not None:
        chunk = Chunk.from_message(message)
        done.put((chunk.index, run_chunk(chunk)))
        taken += 1
    say(f"took {taken} chunk(s) off the queue, then the sentinel")


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser, workers=2)
    parser.add_argument("--chunks", type=int, default=6, help="ranges to cut 1..N into")
    arguments = parser.parse_args()
    job = Job("sum", arguments.n, arguments.chunks)
    todo: Queue[dict[str, Any] | None] = multiprocessing.Queue()
    done: Queue[tuple[int, int]] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=work, args=(todo, done), name=f"queue-worker-{number}")
        for number in range(arguments.workers)
    ]
    partials: dict[int, int] = {}
    with running(workers):
        for chunk in split(job):
            todo.put(chunk.to_message())  # a range, never the numbers
        for _ in workers:
            todo.put(None)
        for _ in range(job.chunks):
            index, partial = done.get(timeout=JOIN_TIMEOUT_S)
            partials[index] = partial
            say(f"got partial {partial} of chunk {index}")
    return 0 if verify(job, sum(partials.values())) else 1


if __name__ == "__main__":
    run(main)
