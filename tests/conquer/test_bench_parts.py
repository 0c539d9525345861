"""The bench's parts on their own: the figures it derives (from made-up measurements, never timed ones),
the probes' answer checks, and the private Redis that the floor measures coming and going cleanly."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conquer import figures
from conquer.bench import granularity, ipc_probe, redis_floor, startup, targets
from conquer.bench.points import Point
from tasks import Chunk, Job
from workers.base import ChunkResult


@given(items=st.integers(1, 10_000), workers=st.integers(1, 512))
def test_the_latency_limit_of_one_item_chunks_is_items_over_rounds(items: int, workers: int) -> None:
    job = Job("download", items, items, latency=0.1)
    limit = figures.speedup_limit(job, workers, cores=2).value
    assert limit == items / math.ceil(items / workers)
    assert 1 <= limit <= min(workers, items)


@given(n=st.integers(1, 10_000), chunks=st.integers(1, 1_000), workers=st.integers(1, 64))
def test_the_latency_limit_is_one_for_one_worker_and_never_beats_the_workers(
    n: int, chunks: int, workers: int
) -> None:
    job = Job("download", n, min(chunks, n), latency=0.01)
    assert figures.speedup_limit(job, 1, cores=2).value == 1
    limit = figures.speedup_limit(job, workers, cores=2).value
    assert 1 <= limit <= min(workers, job.chunks) + 1e-9


def test_the_issue_download_target_is_exactly_the_latency_limit() -> None:
    """100 one-item chunks on 32 workers: 4 rounds, so 100 items / 4 rounds."""
    job = Job("download", 100, 100, latency=0.1)
    assert figures.speedup_limit(job, 32, cores=2).value == 100 / math.ceil(100 / 32) == 25


@pytest.mark.parametrize(
    ("workers", "cores", "chunks", "limit"), [(2, 2, 16, 2), (4, 2, 16, 2), (1, 2, 16, 1), (8, 8, 4, 4)]
)
def test_cpu_bound_work_is_limited_by_workers_cores_and_chunks(
    workers: int, cores: int, chunks: int, limit: int
) -> None:
    assert figures.speedup_limit(Job("sum", 1000, chunks), workers, cores).value == limit


def test_granularity_overhead_recovers_a_known_line() -> None:
    fixed, per_chunk = 0.5, 0.002
    points = []
    for chunks in (1, 4, 16, 64, 256, 1024):
        point = Point("made up", {"chunks": chunks, "executor": "x"}, "wall_s", "s")
        # Coarse chunks idle workers (extra time at 1 and 4); fine ones follow the line exactly.
        point.samples = [fixed + per_chunk * chunks + (1.0 if chunks < 16 else 0.0)]
        points.append(point)
    found = granularity.overhead(points)
    assert found["fit_chunks"] == [64, 256, 1024]
    assert found["per_chunk_s"] == pytest.approx(per_chunk)
    assert found["fixed_s"] == pytest.approx(fixed)
    assert found["overhead_dominates_from_chunks"] == round(fixed / per_chunk)
    assert found["fastest_chunks"] == 16


def test_a_wrong_answer_leaves_a_point_without_a_figure() -> None:
    point = Point("made up", {}, "wall_s", "s", samples=[1.0, 2.0, 3.0])
    assert point.to_dict()["median"] == 2.0
    point.verified = False
    point.error = "wrong answer: 1 != 2"
    record = point.to_dict()
    assert (record["median"], record["min"], record["max"], record["verified"]) == (None, None, None, False)


@pytest.mark.parametrize(
    ("value", "comparison", "threshold", "status", "shortfall"),
    [
        (2.0, ">=", 1.9, "met", 0.0),
        (1.9, ">=", 1.9, "met", 0.0),
        (0.95, ">=", 1.9, "missed", 0.5),
        (1.0, "<=", 1.1, "met", 0.0),
        (1.21, "<=", 1.1, "missed", 0.1),
        (None, ">=", 1.9, "not measured", None),
    ],
)
def test_targets_are_met_missed_by_a_share_or_not_measured(
    value: float | None, comparison: str, threshold: float, status: str, shortfall: float | None
) -> None:
    judged = targets.judge(value, comparison, threshold)
    assert judged[0] == status
    assert judged[1] == (pytest.approx(shortfall) if shortfall is not None else None)


def test_a_probe_rejects_a_wrong_reply() -> None:
    chunk = ipc_probe.probe_chunk(41)
    right = ChunkResult(41, 41, 42, 41, "host", os.getpid(), "main", 0.0, 0.0)
    ipc_probe.check(right, chunk)
    with pytest.raises(ipc_probe.ProbeError, match="wrong reply"):
        ipc_probe.check(ChunkResult(41, 41, 42, 40, "host", os.getpid(), "main", 0.0, 0.0), chunk)
    with pytest.raises(ipc_probe.ProbeError):
        ipc_probe.check("not a result", Chunk("sum", 41, 41, 42))


@pytest.mark.parametrize("mechanism", list(ipc_probe.ECHOES))
def test_each_in_host_round_trip_goes_through_a_real_worker(mechanism: str) -> None:
    samples = ipc_probe.measure(mechanism, "fork", count=5, repeats=2)
    assert len(samples) == 2
    assert all(sample > 0 for sample in samples)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_starting_processes_waits_for_each_to_report_its_own_pid(method: str) -> None:
    assert startup.start_processes(method, 2) > 0


@pytest.mark.skipif(redis_floor.server_binary() is None, reason="no redis-server binary here")
def test_the_private_redis_answers_then_leaves_nothing_behind() -> None:
    binary = redis_floor.server_binary()
    assert binary is not None
    with redis_floor.private_redis(binary) as endpoints:
        socket_path = endpoints[0].socket_path
        assert socket_path is not None
        key = redis_floor.run_key()
        for endpoint in endpoints:
            assert redis_floor.command(endpoint, "PING") == b"+PONG"
            assert redis_floor.integer(endpoint, "EXISTS", key) == 0
    assert not Path(socket_path).parent.exists()
