"""The bench's parts on their own: the figures it derives (from made-up measurements, never timed ones),
the probes' answer checks, and the private Redis that the floor measures coming and going cleanly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conquer import figures, peak_rss
from conquer.bench import granularity, ipc_probe, memory, redis_floor, startup, targets
from conquer.bench.points import Point
from tasks import Chunk, Job
from tests.conftest import fresh_python
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


#: A forked child that holds `size` bytes for the moment it takes to write them, then exits: far
#: shorter than any sampling period (the old sampler looked every 10-20 ms).
BRIEF_PEAK = """
import json, os
from dataclasses import asdict
from conquer import figures, peak_rss
pid = os.fork()
if pid == 0:
    block = bytearray(b"x") * {size}  # written, so every page of it is resident
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps(asdict(peak_rss.read())))
"""


def test_a_child_peak_too_brief_to_sample_is_in_the_kernel_figures() -> None:
    size = 64 * 1024 * 1024
    peaks = peak_rss.Peaks(**json.loads(fresh_python(BRIEF_PEAK.format(size=size))))
    assert peaks.largest_child_bytes >= size
    assert peaks.own_bytes < size  # the parent never held the block: the two figures are separate
    assert (peaks.forks, peaks.unreaped) == (1, 0)
    assert peaks.tree_bound_bytes == peaks.own_bytes + peaks.largest_child_bytes


#: A launcher that holds `size` bytes while it starts a program that reads its own mark.
BIG_LAUNCHER = """
import subprocess, sys
block = bytearray(b"x") * {size}
program = "from conquer import peak_rss; print(peak_rss.read().own_bytes)"
print(subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout)
"""


def test_a_programs_own_peak_is_not_its_launchers() -> None:
    """ru_maxrss would say 200 MB here: at exec the kernel folds the launcher's mark into it."""
    size = 200 * 1024 * 1024
    assert int(fresh_python(BIG_LAUNCHER.format(size=size))) < size / 4


def test_the_probe_is_the_command_and_counts_every_worker_it_forks(tmp_path: Path) -> None:
    report = tmp_path / "peaks.json"
    argv = ["conquer", "run", "sum", "100_000", "--on", "processes", "--start-method", "fork"]
    result = subprocess.run(
        [sys.executable, "-m", "conquer.peak_rss", str(report), *argv, "--workers", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True  # the command's own output, untouched
    peaks = peak_rss.load(report)
    assert (peaks.forks, peaks.unreaped) == (3, 0)
    assert peaks.own_bytes > 0
    assert peaks.largest_child_bytes > 0


def test_the_probe_passes_the_commands_failure_on_and_still_reports(tmp_path: Path) -> None:
    report = tmp_path / "peaks.json"
    result = subprocess.run(
        [sys.executable, "-m", "conquer.peak_rss", str(report), "conquer", "run", "sum", "many"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "'many' is not an integer" in result.stderr
    assert peak_rss.load(report).forks == 0


def test_a_run_that_leaves_a_child_unreaped_is_refused_not_measured() -> None:
    """Under spawn the resource tracker is a child the command never waits for: its peak, and any
    worker's it might stand for, would be in no figure."""
    argv = ["conquer", "run", "sum", "1000", "--on", "processes", "--start-method", "spawn", "--workers", "1"]
    with pytest.raises(memory.MemoryProbeError, match="never waited for"):
        memory.peak_of_run([*argv, "--json"])
