"""Job progress in Redis: exact counts when chunks run twice, one round trip per read, a TTL on every
key. Against the session's real Redis, under the session's own key prefix."""

from __future__ import annotations

import secrets

import pytest
import redis

from tasks import Job
from tests.conftest import Stack
from workers.celery.jobstore import CANCELLED, FAILURE, QUEUED, RUNNING, SUCCESS, JobStore

TTL = 120


@pytest.fixture
def store(celery_stack: Stack) -> JobStore:
    return JobStore(celery_stack.redis, prefix=celery_stack.prefix + "unit:", ttl=TTL)


def new_id() -> str:
    return secrets.token_hex(8)


def record(index: int, host: str = "w1@test") -> dict[str, object]:
    return {"index": index, "host": host, "pid": 1, "value": index, "start": index, "stop": index + 1}


def test_a_job_goes_from_queued_to_success(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id, Job("sum", 100, 4))
    status = store.status(job_id)
    assert status is not None
    assert (status.state, status.done, status.total) == (QUEUED, 0, 4)
    assert store.chunk_started(job_id)
    assert store.status(job_id).state == RUNNING  # type: ignore[union-attr]
    for index in range(4):
        store.chunk_done(job_id, record(index, host=f"w{index % 2}@test"))
    store.finished(job_id, 5050)
    status = store.status(job_id)
    assert status is not None
    assert (status.state, status.done, status.value) == (SUCCESS, 4, 5050)
    assert status.workers == {"w0@test": 2, "w1@test": 2}


def test_a_chunk_run_twice_counts_once(store: JobStore) -> None:
    """With late acknowledgement a chunk may run again after its worker died: still 1 of 3."""
    job_id = new_id()
    store.create(job_id, Job("sum", 30, 3))
    store.chunk_done(job_id, record(1))
    store.chunk_done(job_id, record(1))
    assert store.status(job_id).done == 1  # type: ignore[union-attr]
    assert store.pending(job_id, 3) == [0, 2]
    assert [r["index"] for r in store.records(job_id)] == [1, 1]  # the log keeps both runs


def test_the_first_failure_is_kept_and_fails_the_job(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id, Job("sum", 30, 3))
    store.chunk_failed(job_id, 2, "chunk 2 [21, 31)", "InjectedFault: boom")
    store.chunk_failed(job_id, 0, "chunk 0 [1, 11)", "InjectedFault: later")
    status = store.status(job_id)
    assert status is not None
    assert (status.state, status.failed) == (FAILURE, 2)
    assert status.error == "chunk 2 [21, 31) failed: InjectedFault: boom"


def test_a_cancelled_job_refuses_to_start_chunks(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id, Job("sum", 30, 3))
    store.cancel(job_id)
    assert not store.chunk_started(job_id)
    assert store.status(job_id).state == CANCELLED  # type: ignore[union-attr]


def test_an_unknown_or_expired_job_has_no_status(store: JobStore) -> None:
    assert store.status(new_id()) is None
    # A late chunk of an expired job leaves a trace with a TTL, never a half job.
    job_id = new_id()
    store.chunk_started(job_id)
    assert store.status(job_id) is None


def test_every_key_of_a_job_has_a_ttl(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id, Job("sum", 30, 3))
    store.chunk_started(job_id)
    store.chunk_done(job_id, record(0))
    store.chunk_failed(job_id, 1, "chunk 1 [11, 21)", "E: x")
    store.finished(job_id, 1)
    keys = [key for key in store.keys(job_id) if store.client.exists(key)]
    assert len(keys) == 4
    assert all(0 < store.client.ttl(key) <= TTL for key in keys)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the commands (or pipelines) sent to Redis: each is one network round trip."""
    sent: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(
        self: redis.connection.AbstractConnection, command: object, check_health: bool = True
    ) -> None:
        sent.append(1)
        original(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.mark.parametrize("chunks", [4, 10_000])
def test_reading_progress_is_one_round_trip_whatever_the_chunk_count(
    store: JobStore, round_trips: list[int], chunks: int
) -> None:
    job_id = new_id()
    store.create(job_id, Job("sum", 10**6, chunks))
    for index in range(0, chunks, max(1, chunks // 4)):
        store.chunk_done(job_id, record(index))
    round_trips.clear()
    status = store.status(job_id)
    assert status is not None
    assert status.done == len(range(0, chunks, max(1, chunks // 4)))
    assert len(round_trips) == 1


def test_every_run_retry_and_combine_is_counted_but_a_cancelled_job_starts_none(store: JobStore) -> None:
    """Unlike the done bitmap, the counters count re-runs: that is how a drill sees a chunk run again
    or the combine step run more than once."""
    job_id = new_id()
    store.create(job_id, Job("sum", 30, 3, fault="transient:1@5"))
    for _ in range(4):  # 3 chunks, one of them twice
        assert store.chunk_started(job_id)
    store.chunk_retried(job_id)
    store.finished(job_id, 465)
    status = store.status(job_id)
    assert status is not None
    assert (status.attempts, status.retries, status.combines) == (4, 1, 1)
    assert status.job.fault == "transient:1@5"
    assert {"attempts": 4, "retries": 1, "combines": 1}.items() <= status.to_dict().items()
    store.cancel(job_id)
    assert not store.chunk_started(job_id)
    assert store.status(job_id).attempts == 4  # type: ignore[union-attr]
