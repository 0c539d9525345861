"""Series `granularity`: the same job cut into 1 to 4,096 chunks, on `processes` and on `celery`.

Few chunks leave workers idle (1 chunk runs on 1 worker whatever W is); many chunks pay a message, a
scheduling decision and a result per chunk. The time against the chunk count shows where that
per-chunk cost starts to dominate, and the slope of the line through the finer half of the sweep is
the per-chunk overhead itself.
"""

from __future__ import annotations

import statistics
from typing import Any

import workers
from conquer.bench import registry
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, run_cases, timed
from tasks import Job
from workers import Plan

WANTED = ("processes", registry.CELERY)


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    counts = [count for count in profile.granularity_chunks if count <= profile.granularity_n]
    series = Series(
        "granularity",
        "Chunk granularity",
        f"sum 1..{profile.granularity_n:_} cut into {counts[0]}..{counts[-1]} chunks on {cores} workers; "
        "the per-chunk overhead is the least-squares slope of the median wall time against the chunk "
        "count over the finer half of the sweep, where per-chunk costs dominate.",
        parameters={"kind": "sum", "n": profile.granularity_n, "chunks": counts, "workers": cores},
    )
    names = registry.present(series, WANTED)
    cases: list[tuple[Job, Plan]] = [
        (Job("sum", profile.granularity_n, count), workers.plan("sum", name, cores))
        for name in names
        for count in counts
    ]
    reporter.begin(series, len(cases) * profile.repeats)
    with timed(series):
        series.points = run_cases(cases, context)
    series.derived = {
        name: overhead([point for point in series.points if point.params["executor"] == name])
        for name in names
    }
    return series


def overhead(points: list[Point]) -> dict[str, Any]:
    """Per-chunk overhead (the slope over the finer half), the fixed part (the intercept), the chunk
    count from which the per-chunk part outweighs the fixed part, and the fastest chunk count."""
    measured = [(point.params["chunks"], point.median) for point in points if point.median is not None]
    result: dict[str, Any] = {
        "fastest_chunks": None,
        "fastest_wall_s": None,
        "fit_chunks": [],
        "per_chunk_s": None,
        "fixed_s": None,
        "overhead_dominates_from_chunks": None,
    }
    if not measured:
        return result
    result["fastest_chunks"], result["fastest_wall_s"] = min(measured, key=lambda pair: pair[1])
    middle = statistics.median([chunks for chunks, _ in measured])
    finer = [(chunks, wall) for chunks, wall in measured if chunks >= middle]
    result["fit_chunks"] = [chunks for chunks, _ in finer]
    if len(finer) >= 2:
        slope, intercept = statistics.linear_regression(
            [float(chunks) for chunks, _ in finer], [wall for _, wall in finer]
        )
        result["per_chunk_s"] = slope
        result["fixed_s"] = intercept
        if slope > 0 and intercept > 0:
            result["overhead_dominates_from_chunks"] = round(intercept / slope)
    return result
