"""Shared state between processes: ``Value``/``Array`` in shared memory, and a ``Manager``'s server
process — both carrying the job's partial results (the note: avoid shared state where you can).

``Value`` and ``Array`` are C numbers in a shared memory map: the child writes, the parent reads the same
bytes, no copying, no messages — but only fixed-size C types. A ``Manager`` starts a server process that
owns ordinary Python objects (dict, list, ...); every other process holds a proxy, and each operation on
it is a request to that server over a socket: any picklable value, slower, and one more process.

Usage::

    conquer demo shared-state
    conquer demo shared-state --workers 4
    python -m demos.shared_state
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from demos.common import add_job_options, argument_parser, heading, run, say, start_and_join, sum_job, verify
from tasks import Job, chunk_at, run_chunk


def negate(number: Any, array: Any) -> None:
    """The note's example: write a float and negate an array of ints, in shared memory."""
    number.value = 3.1415927
    for index in range(len(array)):
        array[index] = -array[index]
    say(f"wrote {number.value} and negated the array")


def partial_into_array(job: Job, index: int, partials: Any) -> None:
    chunk = chunk_at(job, index)
    partials[index] = run_chunk(chunk)  # each worker owns one slot: no two write the same bytes
    say(f"chunk {index} [{chunk.start}, {chunk.stop}) -> partials[{index}] = {partials[index]}")


def partial_into_dict(job: Job, index: int, partials: Any) -> None:
    chunk = chunk_at(job, index)
    partials[index] = run_chunk(chunk)  # a request to the manager's server process
    say(f"chunk {index} [{chunk.start}, {chunk.stop}) -> sent {partials[index]} to the manager")


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser)
    job = sum_job(parser.parse_args())

    heading("Value and Array: the note's example")
    number, array = multiprocessing.Value("d", 0.0), multiprocessing.Array("i", range(10))
    start_and_join([multiprocessing.Process(target=negate, args=(number, array))])
    say(f"the parent reads {number.value} and {array[:]}")

    heading(f"Array: each of {job.chunks} processes writes its partial sum into its own slot")
    slots = multiprocessing.Array("q", job.chunks)  # 64-bit slots; the Array's lock is not needed here
    start_and_join(
        [multiprocessing.Process(target=partial_into_array, args=(job, i, slots)) for i in range(job.chunks)]
    )
    in_shared_memory = verify(job, sum(slots[:]))

    heading("Manager: a server process owns a dict; the workers write to it through proxies")
    before = set(multiprocessing.active_children())
    with multiprocessing.Manager() as manager:
        (server,) = set(multiprocessing.active_children()) - before
        say(f"the manager's server process is pid {server.pid}")
        partials = manager.dict()
        start_and_join(
            [
                multiprocessing.Process(target=partial_into_dict, args=(job, i, partials))
                for i in range(job.chunks)
            ]
        )
        through_manager = verify(job, sum(partials.values()))
    return 0 if in_shared_memory and through_manager else 1


if __name__ == "__main__":
    run(main)
