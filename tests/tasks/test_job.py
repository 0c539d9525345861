"""`split` and `chunk_at`: contiguous ranges covering 1..n exactly once; messages that don't grow."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import CHUNKS_MAX, KINDS, Chunk, Job, JobError, chunk_at, split


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    n = draw(st.integers(1, 10**6) | st.integers(1, 40))
    # chunks = 1, chunks = n (whenever n is allowed as a chunk count), and everything between.
    chunks = draw(st.sampled_from([1, min(n, CHUNKS_MAX)]) | st.integers(1, min(n, CHUNKS_MAX)))
    return Job("sum", n, chunks)


@given(jobs())
def test_split_covers_one_to_n_exactly_once_with_contiguous_nonempty_ranges(job: Job) -> None:
    chunks = split(job)
    assert len(chunks) == job.chunks
    assert [chunk.index for chunk in chunks] == list(range(job.chunks))
    assert chunks[0].start == 1
    assert chunks[-1].stop == job.n + 1
    for before, after in itertools.pairwise(chunks):
        assert before.stop == after.start
    assert all(chunk.size >= 1 for chunk in chunks)
    assert sum(chunk.size for chunk in chunks) == job.n


@given(jobs())
def test_chunk_sizes_differ_by_at_most_one(job: Job) -> None:
    sizes = {chunk.size for chunk in split(job)}
    assert max(sizes) - min(sizes) <= 1


@given(jobs(), st.data())
def test_chunk_at_matches_split(job: Job, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, job.chunks - 1))
    assert chunk_at(job, index) == split(job)[index]


def test_a_chunk_message_does_not_grow_with_n() -> None:
    """The message is a range: for the largest n it is as small as for n = 10 (up to the digits)."""
    small = json.dumps(chunk_at(Job("sum", 10, 2), 1).to_message())
    largest = KINDS["sum"].n_max
    big = json.dumps(chunk_at(Job("sum", largest, 2), 1).to_message())
    assert len(big) - len(small) <= 2 * len(str(largest))
    assert len(big) < 200


def test_a_chunk_survives_the_json_round_trip() -> None:
    chunk = chunk_at(Job("download", 100, 7, latency=0.25, fail_at=50), 3)
    assert Chunk.from_message(json.loads(json.dumps(chunk.to_message()))) == chunk


def test_cpu_bound_chunks_carry_no_latency() -> None:
    assert chunk_at(Job("sum", 100, 7, latency=0.25), 0).latency == 0.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "sum", "n": 0}, "n must be at least 1"),
        ({"kind": "sum", "n": -3}, "n must be at least 1"),
        ({"kind": "sum", "n": KINDS["sum"].n_max + 1}, "n must be at most"),
        ({"kind": "primes", "n": KINDS["primes"].n_max + 1}, "n must be at most"),
        ({"kind": "sum", "n": 10, "chunks": 0}, "chunks must be at least 1"),
        ({"kind": "sum", "n": 10, "chunks": 11}, "cannot exceed n"),
        ({"kind": "sum", "n": 10**6, "chunks": CHUNKS_MAX + 1}, "chunks must be at most"),
        ({"kind": "sum", "n": 2.5}, "must be an integer"),
        ({"kind": "sum", "n": True}, "must be an integer"),
        ({"kind": "cube", "n": 10}, "unknown kind"),
        ({"kind": "download", "n": 100, "latency": -1}, "latency must be between"),
        ({"kind": "sum", "n": 100, "fail_at": 101}, "fail-at must be an item"),
    ],
)
def test_invalid_jobs_are_refused_with_a_reason(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(JobError, match=message):
        Job(**arguments)  # type: ignore[arg-type]
