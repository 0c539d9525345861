"""A Thread subclass (the note left this a TODO): each thread downloads one chunk; the main thread joins
them and adds up what they received.

Subclassing ``threading.Thread`` means: call ``super().__init__()`` (here to name the thread), put the
thread's work in ``run()`` — which ``start()`` calls in the new thread — and keep the result on the
object for whoever ``join()``\\s it. Reading ``received`` after ``join()`` is safe: ``join()`` returns only
once ``run()`` has finished. An exception in ``run()`` does not reach the joiner (threading prints it and
the thread ends), so the subclass catches it and keeps it too. All the threads share one process: one
pid, many thread names.

Usage::

    conquer demo thread-subclass
    conquer demo thread-subclass --threads 8 --latency 0.02
    python -m demos.thread_subclass
"""

from __future__ import annotations

import threading
import time

from demos.common import argument_parser, run, say, verify
from tasks import Chunk, Job, run_chunk, split


class ChunkDownloader(threading.Thread):
    """Downloads one chunk of a `download` job in its own thread."""

    def __init__(self, chunk: Chunk) -> None:
        super().__init__(name=f"downloader-{chunk.index}")
        self.chunk = chunk
        self.received: int | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        say(f"downloading items [{self.chunk.start}, {self.chunk.stop}) (native thread id {self.native_id})")
        try:
            self.received = run_chunk(self.chunk)
        except Exception as error:  # kept for the joiner, which would otherwise never see it
            self.error = error
            return
        say(f"received {self.received} bytes")


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--threads", type=int, default=4, help="one thread per chunk")
    parser.add_argument("--items", type=int, default=5, help="items per chunk")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each item takes")
    arguments = parser.parse_args()
    job = Job("download", arguments.threads * arguments.items, arguments.threads, latency=arguments.latency)
    began = time.perf_counter()
    threads = [ChunkDownloader(chunk) for chunk in split(job)]
    for thread in threads:
        thread.start()
    say(f"started {len(threads)} threads; waiting for them with join()")
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    failed = [thread for thread in threads if thread.error is not None]
    for thread in failed:
        say(f"{thread.name} failed: {thread.error!r}")
    total = sum(thread.received or 0 for thread in threads)
    serial = job.n * job.latency
    verified = verify(job, total)
    say(f"{wall:.2f} s with {len(threads)} threads; one after another it would take {serial:.2f} s")
    return 0 if verified and not failed else 1


if __name__ == "__main__":
    run(main)
