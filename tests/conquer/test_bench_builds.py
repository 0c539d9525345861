"""`conquer bench --series builds` through its installed entry point, at tiny sizes and one run per point:
every row of every build is there, verified, says which build ran it and whether the GIL was off, the
Celery rows ran the pool they name, and the document matches the documented schema. Nothing here checks
a speed: the full run's figures are in docs/lessons.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conquer.bench import JSON_FILE, charts
from conquer.exitcodes import ExitCode
from tests.conftest import conquer, one_line
from tests.conquer.test_bench import validate
from tests.conquer.test_interpreters import FREE_THREADED, WITH_GIL, needs_both_builds

#: What each build runs: serial once, the rest at every worker count; Celery once per pool.
WAYS = {
    ("serial", None),
    ("threads", None),
    ("processes", None),
    ("celery", "prefork"),
    ("celery", "threads"),
}


def bench_builds(out: Path, *pythons: Path) -> dict[str, Any]:
    python_options = [word for python in pythons for word in ("--python", str(python))]
    result = conquer(
        *("bench", "--tiny", "--series", "builds", "--repeats", "1", "--out", str(out), *python_options),
        timeout=300,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    document: dict[str, Any] = json.loads((out / JSON_FILE).read_text())
    validate(document)
    (series,) = document["series"]
    assert series["name"] == "builds"
    return series


def check_points(series: dict[str, Any], builds: int) -> None:
    counts = series["parameters"]["workers"]
    for kind in ("sum", "primes"):
        for build in range(builds):
            points = [
                p for p in series["points"] if (p["params"]["kind"], p["params"]["build"]) == (kind, build)
            ]
            ways = {(p["params"]["executor"], p["params"]["pool"]) for p in points}
            assert ways == WAYS, (kind, build)
            assert len(points) == 1 + (len(WAYS) - 1) * len(counts)
            for point in points:
                assert point["error"] is None, point["label"]
                assert point["verified"], point["label"]
                assert point["derived"]["speedup"] is not None, point["label"]
                if point["params"]["executor"] == "celery":
                    # The stack the runner deployed is the pool the point names.
                    words = "threads pool of" if point["params"]["pool"] == "threads" else "prefork pool of"
                    assert words in point["deployment"]["stack"], point["deployment"]
        serials = [
            p for p in series["points"] if p["params"]["kind"] == kind and p["params"]["executor"] == "serial"
        ]
        assert [p["derived"]["speedup"] for p in serials] == [1.0] * builds


@needs_both_builds
def test_builds_runs_every_way_under_each_interpreter_and_says_which_build_ran_it(tmp_path: Path) -> None:
    series = bench_builds(tmp_path, FREE_THREADED, WITH_GIL)
    assert series["parameters"]["interpreters_given"] is True
    free, gil = series["parameters"]["interpreters"]
    assert (free["free_threaded"], free["gil_enabled"], gil["free_threaded"], gil["gil_enabled"]) == (
        True,
        False,
        False,
        True,
    )
    check_points(series, builds=2)
    for point in series["points"]:
        ran = point["params"]["interpreter"]
        # The GIL as the runs found it: off for every free-threaded row, or the label would lie.
        assert ran["gil_enabled"] is (point["params"]["build"] == 1), point["label"]
        assert ("GIL off" in point["label"]) is (not ran["gil_enabled"])
    for kind in ("sum", "primes"):
        # Both builds' serial beside the GIL build's: the single-thread cost, the GIL build's 1.0.
        cost = series["derived"][kind]["serial_over_gil_serial"]
        assert set(cost) == {"0", "1"}
        assert cost["1"] == 1.0
        gil_serial = next(
            p
            for p in series["points"]
            if (p["params"]["kind"], p["params"]["executor"], p["params"]["build"]) == (kind, "serial", 1)
        )
        assert gil_serial["derived"]["speedup_over_gil_serial"] == 1.0
    if charts.available():
        assert (tmp_path / "builds.png").read_bytes().startswith(b"\x89PNG")


def test_without_python_builds_measures_this_interpreter_only_and_says_so(tmp_path: Path) -> None:
    series = bench_builds(tmp_path)
    assert series["parameters"]["interpreters_given"] is False
    assert len(series["parameters"]["interpreters"]) == 1
    assert "this interpreter only (no --python given)" in series["what"]
    check_points(series, builds=1)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--series", "cpu", "--python", str(WITH_GIL)], "--python applies to the builds series only"),
        (["--series", "builds", "--python", "/nonexistent/python3"], "/nonexistent/python3"),
    ],
)
def test_a_python_that_cannot_be_used_is_refused_before_anything_runs(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    result = conquer("bench", "--tiny", "--out", str(tmp_path), *arguments)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert expected in one_line(result.stderr)
    assert not (tmp_path / JSON_FILE).exists()
