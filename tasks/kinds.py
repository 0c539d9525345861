"""The three job kinds: what one chunk computes, and a second, independent way to get the answer.

- ``sum``      Σ1..n by an explicit Python loop — CPU-bound and GIL-holding, like the classic exercise.
               Checked against n(n+1)/2.
- ``primes``   how many primes are <= n, by trial division — CPU-bound with *uneven* chunks (a range of
               big numbers costs more than one of small numbers), so load balancing shows. Checked by a
               segmented sieve of Eratosthenes, a different algorithm.
- ``download`` I/O-bound: every item waits `latency` seconds, as a network download would, and yields a
               byte count. Checked by the closed form of the byte total.

Everything here is a pure function of its arguments: no concurrency, no shared state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from math import isqrt

# ---------------------------------------------------------------------------------------------- sum


def sum_range(start: int, stop: int) -> int:
    """Σ start..stop-1, one addition at a time (a loop, not a formula: this is the work being timed)."""
    total = 0
    for number in range(start, stop):
        total += number
    return total


def sum_check(n: int) -> int:
    return n * (n + 1) // 2


# ------------------------------------------------------------------------------------------- primes


def is_prime(number: int) -> bool:
    """Trial division by 2, 3 and then 6k ± 1 up to √number: its cost grows with the number."""
    if number < 4:
        return number >= 2
    if number % 2 == 0 or number % 3 == 0:
        return False
    divisor = 5
    while divisor * divisor <= number:
        if number % divisor == 0 or number % (divisor + 2) == 0:
            return False
        divisor += 6
    return True


def count_primes_range(start: int, stop: int) -> int:
    return sum(1 for number in range(start, stop) if is_prime(number))


def count_primes_sieve(n: int, segment: int = 1 << 18) -> int:
    """π(n) by a segmented sieve of Eratosthenes: O(√n + segment) memory, whatever n is."""
    if n < 2:
        return 0
    root = isqrt(n)
    small = bytearray([1]) * (root + 1)
    small[:2] = b"\0\0"
    for p in range(2, isqrt(root) + 1):
        if small[p]:
            small[p * p :: p] = bytes(len(range(p * p, root + 1, p)))
    base_primes = [p for p in range(2, root + 1) if small[p]]
    count = 0
    for low in range(2, n + 1, segment):
        high = min(low + segment, n + 1)
        alive = bytearray([1]) * (high - low)
        for p in base_primes:
            if p * p >= high:
                break
            first = max(p * p, -(-low // p) * p)
            alive[first - low :: p] = bytes(len(range(first, high, p)))
        count += alive.count(1)
    return count


# ----------------------------------------------------------------------------------------- download

#: Simulated file sizes cycle through 1..16 KiB.
SIZE_UNIT = 1024
SIZE_CYCLE = 16


def item_size(item: int) -> int:
    """Bytes "downloaded" for item `item`."""
    return SIZE_UNIT * (1 + item % SIZE_CYCLE)


def download_range(start: int, stop: int, latency: float) -> int:
    """Fetch items start..stop-1 one after another, each taking `latency` seconds of waiting."""
    received = 0
    for item in range(start, stop):
        time.sleep(latency)  # the thread waits, releasing the GIL, as it would on a socket read
        received += item_size(item)
    return received


async def download_range_async(start: int, stop: int, latency: float) -> int:
    """The same download as a coroutine: the wait yields to the event loop instead of blocking."""
    import asyncio  # here, not at the top: only the asyncio executor needs it, and it costs 25 ms

    received = 0
    for item in range(start, stop):
        await asyncio.sleep(latency)
        received += item_size(item)
    return received


def download_check(n: int) -> int:
    """Σ item_size(1..n) in closed form: n units plus Σ (i mod c), c = SIZE_CYCLE."""
    full_cycles, rest = divmod(n, SIZE_CYCLE)
    remainders = full_cycles * SIZE_CYCLE * (SIZE_CYCLE - 1) // 2 + rest * (rest + 1) // 2
    return SIZE_UNIT * (n + remainders)


# ------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    summary: str
    io_bound: bool
    #: The largest n accepted, and why (shown in the error message).
    n_max: int
    n_max_reason: str
    compute: Callable[[int, int, float], int]
    check: Callable[[int], int]
    #: How `check` gets the answer, shown next to every verified result.
    check_method: str


KINDS: dict[str, Kind] = {
    "sum": Kind(
        name="sum",
        summary="Σ1..n by a Python loop (CPU-bound)",
        io_bound=False,
        # Every partial and the total fit a signed 64-bit slot of shared memory: 4e9·(4e9+1)/2 < 2^63.
        n_max=4_000_000_000,
        n_max_reason="partial sums must fit a signed 64-bit shared-memory slot",
        compute=lambda start, stop, _latency: sum_range(start, stop),
        check=sum_check,
        check_method="n(n+1)/2",
    ),
    "primes": Kind(
        name="primes",
        summary="count the primes <= n by trial division (CPU-bound, uneven chunks)",
        io_bound=False,
        # Trial division of 10^9 numbers would take hours in pure Python.
        n_max=100_000_000,
        n_max_reason="trial division beyond that takes hours",
        compute=lambda start, stop, _latency: count_primes_range(start, stop),
        check=count_primes_sieve,
        check_method="segmented sieve of Eratosthenes",
    ),
    "download": Kind(
        name="download",
        summary="n simulated downloads, `latency` s each (I/O-bound)",
        io_bound=True,
        n_max=100_000,
        n_max_reason="at the default 0.1 s per item that is already 3 hours serially",
        compute=download_range,
        check=download_check,
        check_method="closed form of Σ item sizes",
    ),
}


def combine(kind: str, partials: list[int]) -> int:
    """Reduce the chunks' partial results. Every kind here adds them up; order does not matter."""
    if kind not in KINDS:
        raise KeyError(kind)
    return sum(partials)
