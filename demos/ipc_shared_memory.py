"""IPC by shared memory: the parent creates a named ``SharedMemory`` block of 64-bit slots; each worker
attaches to it by name and writes its partial sum into its own slot.

No messages at all: both sides map the same physical pages, so a write is visible to the other process
without copying. What shared memory does not give is a way to know *when* the data is there — here the
worker's exit is that signal (the parent reads after ``join()``); elsewhere it takes a lock, a semaphore
or a message. Each worker writes only its own slot, so no two processes write the same bytes. The
creator closes and unlinks the block (``/dev/shm/<name>`` on Linux) when everyone is done.

Usage::

    conquer demo ipc-shared-memory
    conquer demo ipc-shared-memory --workers 4
    python -m demos.ipc_shared_memory
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.shared_memory import SharedMemory

from demos.common import add_job_options, argument_parser, run, say, start_and_join, sum_job, verify
from tasks import Job, chunk_at, run_chunk

SLOT = 8  # bytes: one signed 64-bit integer per chunk


def slots_of(block: SharedMemory) -> memoryview:
    """The block's bytes seen as signed 64-bit integers (release the view before closing the block)."""
    assert block.buf is not None  # (None only after close())
    return block.buf.cast("q")


def work(job: Job, index: int, name: str) -> None:
    block = SharedMemory(name=name)  # attach to the parent's block by its name
    try:
        chunk = chunk_at(job, index)
        slots = slots_of(block)
        slots[index] = run_chunk(chunk)
        say(f"wrote the partial of chunk {index} [{chunk.start}, {chunk.stop}) into slot {index} of {name}")
        slots.release()
    finally:
        block.close()


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser)
    job = sum_job(parser.parse_args())
    block = SharedMemory(create=True, size=SLOT * job.chunks)
    try:
        say(f"created shared memory {block.name!r}, {block.size} bytes")
        start_and_join(
            [
                multiprocessing.Process(target=work, args=(job, index, block.name))
                for index in range(job.chunks)
            ]
        )
        slots = slots_of(block)
        partials = slots.tolist()[: job.chunks]
        slots.release()
        say(f"read {partials} straight from memory")
    finally:
        block.close()
        block.unlink()
    return 0 if verify(job, sum(partials)) else 1


if __name__ == "__main__":
    run(main)
