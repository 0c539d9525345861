"""Checks every timed row must pass, shared by the `compare` and `bench` tests: its runs' facts are
there and sane, and its `disturbed` flags are exactly those its measured shares call for."""

from __future__ import annotations

from typing import Any


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
