"""IPC by signal: worker processes notify the parent with a signal when their chunk is done, and the
parent asks a worker to stop with SIGTERM, which it handles by finishing its current item and exiting.

A signal carries no data — only "it happened" and, read with ``sigtimedwait``, who sent it (``si_pid``):
the partial sums here stay with the workers (see the other ipc demos for carrying them). Two details
matter. Ordinary signals do not queue: two SIGUSR1s pending at once arrive as one, so a parent counting
notifications would wait forever; real-time signals (SIGRTMIN..SIGRTMAX) queue, one per send. And the
parent blocks the signal before starting the workers, so a notification that comes early waits to be
read instead of running the default action (for SIGRTMIN: terminate).

Usage::

    conquer demo ipc-signal
    conquer demo ipc-signal --workers 4
    python -m demos.ipc_signal
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from types import FrameType

from demos.common import JOIN_TIMEOUT_S, add_job_options, argument_parser, heading, run, running, say, sum_job
from tasks import Job, chunk_at, run_chunk

NOTIFY = signal.SIGRTMIN  # a real-time signal: every send is delivered, none merge
#: The stoppable worker's items: far more than it will get through before it is asked to stop.
STOPPABLE_ITEMS = 10_000
ITEM_S = 0.01


def compute_and_notify(job: Job, index: int, parent: int) -> None:
    chunk = chunk_at(job, index)
    partial = run_chunk(chunk)
    say(f"chunk {index} done (partial {partial}); telling pid {parent} with {NOTIFY.name}")
    os.kill(parent, NOTIFY)


def download_until_told_to_stop(parent: int) -> None:
    stop_requested = False

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True  # only set a flag: the loop stops between items, never in the middle of one

    signal.signal(signal.SIGTERM, on_sigterm)
    item = 0
    while not stop_requested and item < STOPPABLE_ITEMS:
        item += 1
        time.sleep(ITEM_S)  # one item's download
        if item == 1:
            os.kill(parent, NOTIFY)  # "my handler is installed and I am under way"
    say(f"SIGTERM handled: stopped cleanly after item {item} of {STOPPABLE_ITEMS}")


def wait_for_notification() -> int:
    """The pid of the process that sent the next NOTIFY (fails at the deadline)."""
    info = signal.sigtimedwait({NOTIFY}, JOIN_TIMEOUT_S)
    if info is None:
        raise SystemExit(f"no notification within {JOIN_TIMEOUT_S:g} s")
    return info.si_pid


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser)
    job = sum_job(parser.parse_args())
    signal.pthread_sigmask(signal.SIG_BLOCK, {NOTIFY})  # before any worker can send it
    parent = os.getpid()

    heading(f"{job.chunks} workers notify the parent with a signal when their chunk is done")
    workers = [
        multiprocessing.Process(target=compute_and_notify, args=(job, index, parent))
        for index in range(job.chunks)
    ]
    with running(workers):
        senders = [wait_for_notification() for _ in workers]
    for sender in senders:
        say(f"notified by pid {sender}")
    every_worker = sorted(senders) == sorted(worker.pid or 0 for worker in workers)
    say(f"{len(senders)} notifications, one from each worker: {every_worker}")

    heading("the parent asks a worker to stop with SIGTERM")
    worker = multiprocessing.Process(target=download_until_told_to_stop, args=(parent,), name="stoppable")
    with running([worker]):
        wait_for_notification()  # its handler is in place: SIGTERM now asks, it does not kill
        say(f"sending SIGTERM to pid {worker.pid}")
        worker.terminate()
    say(f"the worker exited with status {worker.exitcode}: it stopped, it was not killed")
    return 0 if every_worker and worker.exitcode == 0 else 1


if __name__ == "__main__":
    run(main)
