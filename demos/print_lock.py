"""A Lock around output: several processes each print a line word by word — without a shared ``Lock``
their words mix into each other's lines; with it, every line comes out whole.

A line written in one ``write()`` of at most PIPE_BUF bytes is never cut by another process's write
(that is why every demo's ``say`` writes a line at once). Output written in several pieces — word by
word, ``print(a, b)`` to a terminal, a long record — is a sequence of writes, and other processes' writes
can land in between. The lock makes each process's whole line one step. Without it, each writer here
pauses after every word at a barrier that waits for all writers — the mix a busy machine produces now and
then, forced every time. With it, the pause is a short sleep, which would let the others in if the lock
did not keep them out (a barrier inside the lock would wait forever).

Usage::

    conquer demo print-lock
    conquer demo print-lock --processes 6
    python -m demos.print_lock
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

from demos.common import argument_parser, heading, run, say, start_and_join

#: The longest a writer waits at the barrier for the others.
BARRIER_TIMEOUT_S = 30.0
#: The pause after each word when the lock is held.
PAUSE_S = 0.002


def words(number: int) -> list[str]:
    """The line writer `number` prints, one word at a time (the note's "hello world i", with the pid)."""
    return ["hello", "world", str(number), f"from-pid-{os.getpid()}"]


def write_line(number: int, lock: Any, barrier: Any) -> None:
    pause: Callable[[], object] = (
        (lambda: time.sleep(PAUSE_S)) if lock is not None else (lambda: barrier.wait(BARRIER_TIMEOUT_S))
    )
    # `lock` (when given) guards stdout for a whole line: no other writer's word can land inside it.
    with lock if lock is not None else contextlib.nullcontext():
        for position, word in enumerate(words(number)):
            # One write per word, straight to the file descriptor (no buffering to hide the pieces).
            os.write(1, (word if position == 0 else f" {word}").encode())
            pause()
        os.write(1, b"\n")


def show(processes: int, *, locked: bool) -> None:
    how = "WITH" if locked else "without"
    heading(f"{processes} processes print 'hello world N from-pid-P' word by word, {how} a Lock")
    lock = multiprocessing.Lock() if locked else None
    barrier = None if locked else multiprocessing.Barrier(processes)
    start_and_join(
        [
            multiprocessing.Process(target=write_line, args=(number, lock, barrier), name=f"writer-{number}")
            for number in range(processes)
        ]
    )


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--processes", type=int, default=4, help="writers")
    arguments = parser.parse_args()
    if arguments.processes < 2:
        parser.error("--processes must be at least 2")
    show(arguments.processes, locked=False)
    show(arguments.processes, locked=True)
    say("above: without the lock the words of all lines are mixed; with it each line is whole")
    return 0


if __name__ == "__main__":
    run(main)
