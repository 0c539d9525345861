"""Lock: 100 threads each deposit 1 into one account — without a lock deposits are lost, with it the
balance is exactly 100.

A deposit is read, add, write. If another thread writes between one deposit's read and its write, that
other deposit is overwritten and lost. A bare ``balance += 1`` rarely shows it on modern CPython (the
interpreter seldom switches threads between the read and the write), so each deposit here waits between
its read and its write: without the lock, at a barrier that lets no depositor write until every one has
read — the worst order a scheduler could pick, forced every time, so all but one deposit are lost. With
the lock, read-wait-write is one step no other depositor can enter; the wait is then a plain yield of the
GIL (``time.sleep(0)``), since waiting at a barrier while holding the lock would wait forever.

Usage::

    conquer demo bank-account
    conquer demo bank-account --depositors 20
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


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--depositors", type=int, default=100, help="threads, each depositing 1")
    arguments = parser.parse_args()
    if arguments.depositors < 2:
        parser.error("--depositors must be at least 2")
    show(arguments.depositors, locked=False)
    lost_with_lock = show(arguments.depositors, locked=True)
    print(
        "\nWithout the lock every depositor read the balance before any wrote it back, so each write"
        "\nreplaced the others'. With it, each read-add-write ran alone: nothing was lost."
    )
    return 1 if lost_with_lock else 0


if __name__ == "__main__":
    run(main)
