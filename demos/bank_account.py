"""Lock: 100 threads each deposit 1 into one account — without a lock deposits are lost, with it the
balance is exactly 100.

A deposit is read, add, write. If another thread writes between one deposit's read and its write, that
other deposit is overwritten and lost. A bare ``balance += 1`` rarely shows it on modern CPython (the
interpreter seldom switches threads between the read and the write), so each deposit here waits between
its read and its write: without the lock, at a barrier that lets no depositor write until every one has
read — the worst order a scheduler could pick, forced every time, so all but one deposit are lost. With
the lock, read-wait-write is one step no other depositor can enter; the wait is then a plain yield of the
GIL (``time.sleep(0)``), since waiting at a barrier while holding the lock would wait forever.

Then the race unforced: a bare ``balance += 1``, no wait, on as many threads as cores, each depositing
many times. With the GIL a thread is switched out only at the interpreter's periodic checks, which fall
between one ``+=`` and the next, so the race seldom or never shows by itself (measured, 2 threads ×
100,000: none lost in 20 runs on CPython 3.11, nor on 3.13.5t with PYTHON_GIL=1) — rare, not absent,
which is why the first part forces it. On a free-threaded build with the GIL off, two threads run
``+=`` at the same moment on two cores and the race happens by itself: 27-50 % of the 200,000
deposits lost in 9 of 20 runs on 3.13.5t (the others lost none: on a busy 2-core machine the two
threads did not always run at once). The demo reports what happened here and which build it ran on;
with a Lock, nothing is lost on either.

Usage::

    conquer demo bank-account
    conquer demo bank-account --depositors 20 --deposits 10000
    python -m demos.bank_account
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from conquer import machine
from demos.common import argument_parser, heading, run, say

#: The longest any depositor waits at the barrier for the others to have read.
BARRIER_TIMEOUT_S = 30.0


class Account:
    def __init__(self, *, locked: bool) -> None:
        self.balance = 0
        #: Every balance a deposit read, in order (list.append is atomic under the GIL).
        self.reads: list[int] = []
        # `_guard` guards `balance`: held from a deposit's read to its write, so no other deposit can
        # read a balance that is about to be replaced. Unlocked, it guards nothing.
        self._guard: AbstractContextManager[Any] = threading.Lock() if locked else contextlib.nullcontext()

    def deposit(self, amount: int, between: Callable[[], object]) -> None:
        with self._guard:
            balance = self.balance
            self.reads.append(balance)
            between()  # another thread may run here
            self.balance = balance + amount


def deposit_all(depositors: int, *, locked: bool) -> Account:
    """`depositors` threads each deposit 1 and are joined; returns the account."""
    account = Account(locked=locked)
    if locked:
        between: Callable[[], object] = lambda: time.sleep(0)  # noqa: E731  # yield the GIL to the others
    else:
        everyone_has_read = threading.Barrier(depositors)
        between = lambda: everyone_has_read.wait(BARRIER_TIMEOUT_S)  # noqa: E731
    threads = [
        threading.Thread(target=account.deposit, args=(1, between), name=f"depositor-{number}")
        for number in range(depositors)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return account


def describe_reads(reads: list[int]) -> str:
    counts = Counter(reads)
    if len(counts) == 1:
        (value, times), *_ = counts.items()
        return f"all {times} depositors read {value}"
    repeated = sum(times - 1 for times in counts.values())
    return f"they read {len(counts)} different balances ({min(reads)}..{max(reads)}), {repeated} read twice"


def show(depositors: int, *, locked: bool) -> int:
    heading(f"{depositors} threads deposit 1 each, {'WITH' if locked else 'without'} a Lock")
    account = deposit_all(depositors, locked=locked)
    lost = depositors - account.balance
    say(f"balance {account.balance}, expected {depositors}: {lost} deposit(s) lost")
    say(describe_reads(account.reads))
    return lost


class Tally:
    """A balance deposited into by a bare read-add-write (`+=`), with no wait, or under a Lock."""

    def __init__(self, *, locked: bool) -> None:
        self.balance = 0
        self._guard: AbstractContextManager[Any] = threading.Lock() if locked else contextlib.nullcontext()

    def deposit_many(self, times: int, start: threading.Barrier) -> None:
        start.wait(BARRIER_TIMEOUT_S)  # all threads start depositing together
        for _ in range(times):
            with self._guard:
                self.balance += 1


def unforced(threads: int, deposits: int, *, locked: bool) -> int:
    """`threads` threads each deposit 1, `deposits` times, with nothing forcing the race: the deposits
    lost."""
    tally, start = Tally(locked=locked), threading.Barrier(threads)
    workers = [
        threading.Thread(target=tally.deposit_many, args=(deposits, start), name=f"depositor-{number}")
        for number in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return threads * deposits - tally.balance


def show_unforced(threads: int, deposits: int, runs: int) -> tuple[list[int], list[int]]:
    gil = machine.gil_enabled()
    build = "the GIL on" if gil else "the GIL OFF (a free-threaded build)"
    heading(
        f"unforced: a bare `balance += 1`, {threads} threads x {deposits:,} deposits, {runs} runs, {build}"
    )
    bare = [unforced(threads, deposits, locked=False) for _ in range(runs)]
    say(f"without a Lock: deposits lost per run {bare} of {threads * deposits:,}")
    locked = [unforced(threads, deposits, locked=True) for _ in range(runs)]
    say(f"with a Lock:    deposits lost per run {locked}")
    if any(bare) and not gil:
        say(
            "lost by itself: with no GIL the threads run `+=` at the same moment, and one's write "
            "replaces the other's"
        )
    elif any(bare):
        say("lost by itself even with the GIL: rare, and why the race is a bug whatever the build")
    elif gil:
        say(
            "none lost here: the GIL switches threads only between one `+=` and the next: rare, "
            "not impossible"
        )
    else:
        say(
            "none lost in these runs, though the GIL is off: the threads did not run at once (one free core?)"
        )
    return bare, locked


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--depositors", type=int, default=100, help="threads, each depositing 1")
    parser.add_argument("--deposits", type=int, default=100_000, help="unforced: deposits per thread")
    parser.add_argument("--runs", type=int, default=5, help="unforced: runs, each counted apart")
    arguments = parser.parse_args()
    if arguments.depositors < 2:
        parser.error("--depositors must be at least 2")
    if arguments.deposits < 1 or arguments.runs < 1:
        parser.error("--deposits and --runs must be at least 1")
    show(arguments.depositors, locked=False)
    lost_with_lock = show(arguments.depositors, locked=True)
    print(
        "\nWithout the lock every depositor read the balance before any wrote it back, so each write"
        "\nreplaced the others'. With it, each read-add-write ran alone: nothing was lost."
    )
    _, unforced_with_lock = show_unforced(max(2, machine.cores()), arguments.deposits, arguments.runs)
    return 1 if lost_with_lock or any(unforced_with_lock) else 0


if __name__ == "__main__":
    run(main)
