"""The module-level counter trap: two processes each count a global ``counter`` up to 10 — and each gets
to 10 in its own copy (20 in all, the parent's still 0), where one shared counter would stop at 10 in total.

A child process has its own memory: under fork a copy of the parent's, under spawn a fresh import of the
module. ``global counter`` in a child changes that child's copy only. Sharing needs shared memory: a
``multiprocessing.Value``, whose own lock makes "check the total, then add one" a single step.

Usage::

    conquer demo counter-trap
    python -m demos.counter_trap
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from demos.common import argument_parser, heading, run, say, start_and_join

LIMIT = 10
WORDS = ("Ping", "Pong")
#: Each word takes this long to say, as in the note's version, so the two processes take turns.
SAY_S = 0.01

counter = 0  # module level: every process has its own


def count_in_my_copy(word: str) -> None:
    global counter  # noqa: PLW0603  # the trap this demo is about
    said = 0
    while counter < LIMIT:
        counter += 1
        said += 1
        time.sleep(SAY_S)
    say(f"{word}: said {said} times; my counter is {counter}")


def count_in_shared(word: str, total: Any) -> None:
    said = 0
    while True:
        # The Value's lock guards "is the total below the limit? then add one": without it, both
        # processes could see 9 and both add, ending at 11.
        with total.get_lock():
            if total.value >= LIMIT:
                break
            total.value += 1
        said += 1
        time.sleep(SAY_S)
    say(f"{word}: said {said} times; the shared total is {total.value}")


def main() -> int:
    argument_parser(__spec__.name, __doc__).parse_args()
    heading(f"each process counts a module-level `counter` up to {LIMIT}")
    start_and_join([multiprocessing.Process(target=count_in_my_copy, args=(word,)) for word in WORDS])
    say(f"and the parent's counter is still {counter}: each child counted in its own copy")

    heading(f"the same with one shared multiprocessing.Value, up to {LIMIT} in total")
    total = multiprocessing.Value("i", 0)
    start_and_join([multiprocessing.Process(target=count_in_shared, args=(word, total)) for word in WORDS])
    say(f"the shared total is {total.value}")
    return 0 if total.value == LIMIT else 1


if __name__ == "__main__":
    run(main)
