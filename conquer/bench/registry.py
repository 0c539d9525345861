"""Which executors a series runs: whatever `workers.EXECUTORS` holds, found through the registry only —
an executor added later (or one missing from this build) needs no change here."""

from __future__ import annotations

import workers
from conquer.bench.points import Series
from workers import Plan

#: Executors the issues ask the bench to compare that a build may not have yet (Celery arrives with
#: issue 3). A series that wants one that is absent says so instead of silently leaving it out.
EXPECTED = ("celery",)


def present(series: Series, wanted: tuple[str, ...]) -> list[str]:
    """The executors of `wanted` that are registered; each absent one is recorded as skipped."""
    found = []
    for name in wanted:
        if name in workers.EXECUTORS:
            found.append(name)
        else:
            series.skip(
                name,
                f"no {name!r} executor in workers.EXECUTORS in this build, so its points are not measured",
            )
    return found


def note_expected(series: Series) -> None:
    """Record each expected executor this build lacks (for series that run every registered one)."""
    present(series, EXPECTED)


def every_way(kind: str, worker_count: int) -> list[Plan]:
    """Every registered executor and IPC that can run `kind`, at the default start method, without
    the serial baseline."""
    return [plan for plan in workers.variants(kind, worker_count) if plan.executor != "serial"]


def serial(kind: str) -> Plan:
    return workers.plan(kind, "serial", 1)
