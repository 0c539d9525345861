"""Each kind's chunk computation against its independent check."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import InjectedFault, Job, check, chunk_at, combine, run_chunk, run_chunk_async, split
from tasks.kinds import count_primes_range, count_primes_sieve, download_check, item_size, sum_range

#: π(10^k), the number of primes below 10^k — OEIS A006880 (https://oeis.org/A006880). An external
#: fact, used to check the sieve that in turn checks every `primes` run.
PI_OF_POWERS_OF_TEN = {1: 4, 2: 25, 3: 168, 4: 1229, 5: 9592, 6: 78498, 7: 664579}


@pytest.mark.parametrize(("exponent", "count"), PI_OF_POWERS_OF_TEN.items())
def test_sieve_matches_published_prime_counts(exponent: int, count: int) -> None:
    assert count_primes_sieve(10**exponent) == count


@given(st.integers(0, 5000), st.integers(1, 257))
def test_sieve_is_right_on_every_segment_boundary(n: int, segment: int) -> None:
    assert count_primes_sieve(n, segment=segment) == count_primes_range(2, n + 1)


@given(st.integers(1, 10**5), st.integers(0, 500))
def test_sum_of_a_range_matches_gauss(start: int, length: int) -> None:
    stop = start + length
    assert sum_range(start, stop) == (stop - 1) * stop // 2 - (start - 1) * start // 2


@given(st.integers(1, 5000))
def test_download_closed_form_matches_the_item_sizes(n: int) -> None:
    assert download_check(n) == sum(item_size(item) for item in range(1, n + 1))


@pytest.mark.parametrize(
    ("kind", "n", "chunks"), [("sum", 10**5, 7), ("primes", 30_000, 9), ("download", 50, 4)]
)
def test_combined_chunks_give_the_checked_answer(kind: str, n: int, chunks: int) -> None:
    job = Job(kind, n, chunks, latency=0)
    assert combine(kind, [run_chunk(chunk) for chunk in split(job)]) == check(job)


def test_the_async_download_matches_the_blocking_one() -> None:
    chunk = chunk_at(Job("download", 40, 3, latency=0), 1)
    assert asyncio.run(run_chunk_async(chunk)) == run_chunk(chunk)


def test_fault_injection_raises_only_in_the_chunk_holding_the_item() -> None:
    job = Job("sum", 100, 4, fail_at=30)
    outcomes = []
    for chunk in split(job):
        try:
            outcomes.append(run_chunk(chunk))
        except InjectedFault:
            outcomes.append(None)
    assert [o is None for o in outcomes] == [chunk.start <= 30 < chunk.stop for chunk in split(job)]
