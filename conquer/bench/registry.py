"""Which executors a series runs, found through the registry (`workers.EXECUTORS`) only: a series that
measures every executor picks up one added later with no change here, and one that names an executor
the registry lacks records it as skipped, saying why, instead of failing."""

from __future__ import annotations

import workers
from conquer.bench.points import Series
from workers import Plan

#: The broker executor, which the ratio, granularity and round-trip series measure by name.
CELERY = "celery"


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


def every_way(kind: str, worker_count: int) -> list[Plan]:
    """Every registered executor and IPC that can run `kind`, at the default start method, without
    the serial baseline."""
    return [plan for plan in workers.variants(kind, worker_count) if plan.executor != "serial"]


def serial(kind: str) -> Plan:
    return workers.plan(kind, "serial", 1)
