"""IPC by pipe: the parent sends each worker process a range down its own ``Pipe`` and reads the partial
sum back up the same pipe.

``multiprocessing.Pipe()`` returns two connected ends; whatever one end ``send()``\\s (pickled), the other
``recv()``\\s. On Linux a duplex pipe is a Unix socket pair (``Pipe(duplex=False)`` is a one-way OS pipe,
as in ``a | b``). A pipe joins exactly two processes, so each worker gets its own, and the parent waits
on all of them at once with ``multiprocessing.connection.wait``. Each side closes the end it does not
use: a worker that dies then shows up as end-of-file instead of a silent wait.

Usage::

    conquer demo ipc-pipe
    conquer demo ipc-pipe --workers 4 --n 10_000_000
    python -m demos.ipc_pipe
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection, wait

from demos.common import JOIN_TIMEOUT_S, add_job_options, argument_parser, run, running, say, sum_job, verify
from tasks import Chunk, Job, run_chunk, split


def work(end: Connection) -> None:
    chunk = Chunk.from_message(end.recv())
    say(f"got chunk {chunk.index} [{chunk.start}, {chunk.stop}) from the pipe")
    end.send((chunk.index, run_chunk(chunk)))
    end.close()


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser)
    job = sum_job(parser.parse_args())
    pipes = [multiprocessing.Pipe() for _ in range(job.chunks)]
    workers = [
        multiprocessing.Process(target=work, args=(child_end,), name=f"pipe-worker-{index}")
        for index, (_, child_end) in enumerate(pipes)
    ]
    partials: dict[int, int] = {}
    with running(workers):
        talk(job, pipes, partials)
    return 0 if verify(job, sum(partials.values())) else 1


def talk(job: Job, pipes: list[tuple[Connection, Connection]], partials: dict[int, int]) -> None:
    for (parent_end, child_end), chunk in zip(pipes, split(job), strict=True):
        child_end.close()  # the worker has its own copy; ours would hide the worker's end-of-file
        parent_end.send(chunk.to_message())  # a range, never the numbers
    waiting = [parent_end for parent_end, _ in pipes]
    while waiting:
        ready = wait(waiting, timeout=JOIN_TIMEOUT_S)
        if not ready:
            raise SystemExit(f"no answer within {JOIN_TIMEOUT_S:g} s")
        for end in ready:
            assert isinstance(end, Connection)
            index, partial = end.recv()
            say(f"read partial {partial} of chunk {index} from its pipe")
            partials[index] = partial
            waiting.remove(end)


if __name__ == "__main__":
    run(main)
