"""Checks every timed row must pass, shared by the `compare` and `bench` tests: its runs' facts are
there and sane, and its `disturbed` flags are exactly those its measured shares call for."""

from __future__ import annotations

import statistics
from typing import Any

import pytest


def check_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        assert run["window_s"] >= run["wall_s"] >= 0, run
        assert run["resolution_s"] > 0, run
        for key in ("cpu_s", "steal_s", "other_cpu_s", "load_1m"):
            assert run[key] is None or run[key] >= 0, run


def expected_disturbed(measured: dict[str, Any], limits: dict[str, float]) -> set[tuple[str, str]]:
    """The `disturbed` flags the thresholds call for, given a row's `disturbance`."""
    found = set()
    for cause, share in (("steal", "steal_share"), ("other load", "other_cpu_share")):
        if (
            measured[share] is not None
            and measured[share] - (measured["resolution_share"] or 0) > limits[share]
        ):
            found.add(("disturbed", cause))
    if measured["spread"] is not None and measured["spread"] > limits["spread"]:
        found.add(("disturbed", "spread"))
    return found


def disturbed_flags(flags: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(flag["flag"], flag["cause"]) for flag in flags if flag["flag"] == "disturbed"}


def check_row_facts(summary: dict[str, Any]) -> None:
    """Every figure a row carries is there and agrees with the others and with the thresholds; each
    interpreter's rows (one, unless `--python` named several) against that interpreter's serial."""
    limits, cores = summary["thresholds"], summary["machine"]["cores"]
    serials = {}
    for row in summary["results"]:
        serials.setdefault(row["interpreter_index"], row)
    for row in summary["results"]:
        serial = serials[row["interpreter_index"]]
        assert serial["executor"] == "serial"
        runs = row["runs"]
        assert len(runs) == summary["repeats"]
        assert row["wall_s"] == [run["wall_s"] for run in runs]
        assert (
            row["wall_s_min"]
            == min(row["wall_s"])
            <= row["wall_s_median"]
            <= max(row["wall_s"])
            == row["wall_s_max"]
        )
        check_runs(runs)
        # The row says the GIL was on if it was on after any of its runs, in the process that ran it.
        assert row["interpreter"]["gil_enabled"] == any(run["gil_enabled"] for run in runs)
        if row["cpu_s_note"] is None:
            assert row["cpu_s_median"] == pytest.approx(statistics.median(run["cpu_s"] for run in runs))
        found = {(flag["flag"], flag["cause"]) for flag in row["flags"]}
        assert disturbed_flags(row["flags"]) == expected_disturbed(row["disturbance"], limits)
        assert row["speedup"] == pytest.approx(serial["wall_s_median"] / row["wall_s_median"])
        assert row["efficiency"] == pytest.approx(row["speedup"] / cores)
        assert (("impossible", "speedup") in found) == (
            row is not serial and row["speedup"] > row["speedup_limit"]
        )
        serial_disturbed = any(flag["flag"] == "disturbed" for flag in serial["flags"])
        assert (("baseline", "baseline") in found) == (row is not serial and serial_disturbed)
