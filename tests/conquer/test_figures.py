"""The judging of timed rows (`conquer.figures`) on made-up measurements, never timed ones: each flag
fires on data built to deserve it, and stays quiet on clean data — in the figures themselves, in
`conquer compare`'s summary and table, and in the bench's points, tables and targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from conquer import compare, figures, render, rounds
from conquer.bench import tables, targets
from conquer.bench.points import Point, add_speedups
from conquer.interpreters import Interpreter
from conquer.usage import Sample
from tasks import Job
from workers import plan

CORES = 2
#: One tick of /proc/stat on Linux: the counters' resolution in these made-up runs.
TICK = 0.01


def run(wall: float, steal: float = 0.0, other: float = 0.0, resolution: float = TICK) -> Sample:
    return Sample(wall, wall, steal, other, wall, 0.5, resolution)


def runs(walls: Sequence[float], steal_share: float = 0.0, other_share: float = 0.0) -> list[Sample]:
    """Runs whose stolen and others' CPU time are the given shares of cores × wall."""
    return [run(wall, steal_share * CORES * wall, other_share * CORES * wall) for wall in walls]


def flags(walls: Sequence[float], **shares: float) -> list[tuple[str, str]]:
    measured = figures.disturbance(walls, runs(walls, **shares), CORES)
    return [(flag.flag, flag.cause) for flag in figures.disturbed(measured)]


CLEAN = [1.00, 1.02, 1.01]


def test_clean_runs_raise_no_flag() -> None:
    # Just under every threshold: spread 9 %, steal 4 %, others 4 %.
    assert flags([1.00, 1.09, 1.05], steal_share=0.04, other_share=0.04) == []


def test_steal_above_its_threshold_disturbs_a_row() -> None:
    assert flags(CLEAN, steal_share=0.10) == [("disturbed", "steal")]


def test_other_load_above_its_threshold_disturbs_a_row() -> None:
    assert flags(CLEAN, other_share=0.30) == [("disturbed", "other load")]


def test_a_wide_spread_disturbs_a_row_and_one_run_has_none() -> None:
    assert flags([1.0, 1.2, 1.1]) == [("disturbed", "spread")]
    assert flags([1.0]) == []
    assert figures.disturbance([1.0], runs([1.0]), CORES).spread is None


def test_a_tick_of_steal_in_a_short_run_is_rounding_not_disturbance() -> None:
    """5 ms on 2 cores is 10 ms of CPU: one tick of steal is 100 % of it, and proves nothing."""
    short = [run(0.005, steal=TICK)]
    measured = figures.disturbance([0.005], short, CORES)
    assert measured.steal_share == pytest.approx(1.0)
    assert figures.disturbed(measured) == []


def test_every_disturbed_flag_says_what_was_measured_and_what_to_do() -> None:
    measured = figures.disturbance([1.0, 1.5], runs([1.0, 1.5], steal_share=0.2, other_share=0.3), CORES)
    found = figures.disturbed(measured)
    assert [flag.cause for flag in found] == ["steal", "other load", "spread"]
    assert [flag.measured for flag in found] == ["20%", "30%", "40%"]  # 0.5 s of a 1.25 s median
    assert all("rerun" in flag.advice for flag in found)


LIMIT = figures.Limit(2.0, "the most 2 worker(s) on 2 cores can give with 16 chunks")


@pytest.mark.parametrize(("speedup", "impossible"), [(2.36, True), (2.001, True), (2.0, False), (1.9, False)])
def test_a_speedup_above_its_limit_is_impossible(speedup: float, impossible: bool) -> None:
    found = figures.speedup_flags(speedup, LIMIT, baseline=[])
    assert [flag.flag for flag in found] == (["impossible"] if impossible else [])


def test_a_speedup_over_a_disturbed_baseline_is_flagged_and_over_a_clean_one_is_not() -> None:
    disturbed = figures.disturbed(figures.disturbance(CLEAN, runs(CLEAN, other_share=0.5), CORES))
    assert [flag.flag for flag in figures.speedup_flags(1.8, LIMIT, disturbed)] == ["baseline"]
    assert figures.speedup_flags(1.8, LIMIT, baseline=[]) == []
    assert figures.speedup_flags(None, LIMIT, disturbed) == []  # no speedup, nothing to flag


def test_efficiency_is_speedup_over_cores_for_cpu_bound_work_only() -> None:
    assert figures.efficiency(Job("sum", 100), 1.5, CORES) == 0.75
    assert figures.efficiency(Job("download", 10, 10, latency=0.01), 5.0, CORES) is None


# ------------------------------------------------------------------ through `compare`'s summary


def row(
    executor: str, walls: Sequence[float], other_share: float = 0.0, under: Interpreter | None = None
) -> compare.Row:
    measured = rounds.Measured(Job("sum", 10**8), plan("sum", executor, 1 if executor == "serial" else 2))
    if under is not None:
        measured.interpreter, measured.site = under, BUILDS.index(under)
    measured.runs = runs(walls, other_share=other_share)
    return measured


def summary(*rows: compare.Row) -> dict[str, Any]:
    return compare.to_dict(Job("sum", 10**8), list(rows), repeats=3)


def test_compare_flags_the_make_run_that_printed_118_percent(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's run: serial slowed to 2.735 s by other work, processes at 1.159 s: 2.36×."""
    found = summary(row("serial", [2.735, 2.73, 2.74], other_share=0.4), row("processes", [1.159] * 3))
    serial, processes = found["results"]
    assert processes["speedup"] == pytest.approx(2.36, abs=0.005)
    assert [flag["flag"] for flag in processes["flags"]] == ["impossible", "baseline"]
    assert [(flag["flag"], flag["cause"]) for flag in serial["flags"]] == [("disturbed", "other load")]
    render.comparison(found)
    table = capsys.readouterr().out
    assert "118% ✗" in table
    assert "2.36× ✗" in table
    assert "impossible (2.36× > 2×), baseline" in table
    assert "rerun with more repeats" in table  # the legend says what to do


def test_compare_prints_clean_rows_unmarked(capsys: pytest.CaptureFixture[str]) -> None:
    found = summary(row("serial", [2.0, 2.01, 2.02]), row("processes", [1.1, 1.11, 1.12]))
    assert all(result["flags"] == [] for result in found["results"])
    render.comparison(found)
    table = capsys.readouterr().out
    assert "1.81×" in table
    assert "✗" not in table
    assert "?" not in table
    assert "2.000–2.020" in table  # the range beside the median


# ------------------------------------------------------------------ two builds (`compare --python`)

FREE = Interpreter("/ft/bin/python", "3.13.5", free_threaded=True, gil_enabled=False)
GIL = Interpreter("/gil/bin/python", "3.11.2", free_threaded=False, gil_enabled=True)
#: In the order given to --python: their rows' `site`.
BUILDS = [FREE, GIL]


def both(gil_serial_other_share: float = 0.0, free_serial: float = 2.6) -> dict[str, Any]:
    """The issue's figures: free-threaded serial 2.6 s and threads 1.37 s; GIL 2.0 s both."""
    return summary(
        row("serial", [free_serial] * 3, under=FREE),
        row("serial", [2.0] * 3, gil_serial_other_share, under=GIL),
        row("threads", [1.37] * 3, under=FREE),
        row("threads", [2.0] * 3, under=GIL),
    )


def test_each_build_gets_its_speedup_over_its_own_serial_and_over_the_gil_builds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = both()
    assert found["interpreters"] == [FREE.to_dict(), GIL.to_dict()]
    assert found["gil_serial_interpreter"] == GIL.to_dict()
    free_serial, gil_serial, free_threads, gil_threads = found["results"]
    assert free_threads["speedup"] == pytest.approx(2.6 / 1.37)  # threads scale
    assert free_threads["speedup_vs_gil_serial"] == pytest.approx(2.0 / 1.37)
    assert free_serial["speedup_vs_gil_serial"] == pytest.approx(2.0 / 2.6)  # each thread is slower
    assert gil_threads["speedup"] == gil_threads["speedup_vs_gil_serial"] == pytest.approx(1.0)
    assert gil_serial["speedup_vs_gil_serial"] == pytest.approx(1.0)
    assert all(result["flags"] == [] for result in found["results"])
    render.comparison(found)
    table = capsys.readouterr().out
    assert "3.13.5t GIL off" in table
    assert "vs GIL serial" in table
    assert "1.90×" in table
    assert "1.46×" in table
    assert "?" not in table


def test_a_disturbed_gil_serial_flags_the_speedups_over_it_and_no_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    free_serial, _, free_threads, gil_threads = both(gil_serial_other_share=0.5)["results"]
    assert [(flag["flag"], flag["cause"]) for flag in free_threads["flags"]] == [("baseline", "GIL serial")]
    assert [(flag["flag"], flag["cause"]) for flag in free_serial["flags"]] == [("baseline", "GIL serial")]
    assert [(flag["flag"], flag["cause"]) for flag in gil_threads["flags"]] == [("baseline", "baseline")]
    render.comparison(both(gil_serial_other_share=0.5))
    table = capsys.readouterr().out
    free_threads_line = next(line for line in table.splitlines() if "threads" in line and "3.13.5t" in line)
    assert "1.90× │" in free_threads_line  # its own speedup stays unmarked
    assert "1.46× ?" in free_threads_line
    assert "baseline (GIL" in free_threads_line  # the cell wraps after it
    assert "baseline (GIL serial): every speedup" in table  # the legend


def test_each_build_is_judged_against_its_own_serial() -> None:
    """A free-threaded serial slowed to 4 s makes its threads 2.92×: impossible on 2 cores. The GIL
    build's rows are not judged against it."""
    _, _, free_threads, gil_threads = both(free_serial=4.0)["results"]
    assert [flag["flag"] for flag in free_threads["flags"]] == ["impossible"]
    assert gil_threads["flags"] == []


# ------------------------------------------------------------------ through the bench


def point(executor: str, walls: Sequence[float], other_share: float = 0.0) -> Point:
    job = Job("sum", 10**8)
    made = Point(executor, {"executor": executor, "workers": 1 if executor == "serial" else 2}, "wall_s", "s")
    made.samples, made.runs, made.job = list(walls), runs(walls, other_share=other_share), job
    return made


def ratios_series(serial: Point, processes: Point) -> dict[str, Any]:
    add_speedups([serial, processes], serial, CORES)
    return {
        "name": "ratios",
        "parameters": {},
        "skipped": [],
        "derived": {"processes_speedup": processes.derived["speedup"]},
        "points": [serial.to_dict(), processes.to_dict()],
    }


def speedup_target(series: dict[str, Any]) -> dict[str, Any]:
    return next(
        found for found in targets.evaluate({"ratios": series}) if found["id"] == "processes-speedup-sum"
    )


def test_a_target_read_from_an_impossible_point_is_flagged_not_met() -> None:
    series = ratios_series(point("serial", [2.735] * 3), point("processes", [1.159] * 3))
    target = speedup_target(series)
    assert target["status"] == "flagged"
    assert [flag["flag"] for flag in target["flags"]] == ["impossible"]
    assert "flagged, not judged (as measured: met" in target["summary"]
    lines = tables.series_table({**series, "title": "", "what": ""})
    assert "2.36× ✗" in lines[-1]
    assert "impossible (2.36× > 2×)" in lines[-1]


def test_a_target_over_a_disturbed_baseline_is_flagged() -> None:
    target = speedup_target(
        ratios_series(point("serial", [2.0] * 3, other_share=0.5), point("processes", [1.0] * 3))
    )
    assert target["status"] == "flagged"
    assert [flag["flag"] for flag in target["flags"]] == ["baseline"]


def test_a_target_read_from_clean_points_is_met_or_missed() -> None:
    assert (
        speedup_target(ratios_series(point("serial", [2.0] * 3), point("processes", [1.0] * 3)))["status"]
        == "met"
    )
    assert (
        speedup_target(ratios_series(point("serial", [2.0] * 3), point("processes", [1.6] * 3)))["status"]
        == "missed"
    )
