"""Series `io`: the I/O-bound `download` job (one item per chunk) on every executor, against the
latency limit.

With W workers and n one-item chunks that each wait L seconds, no executor can finish before
ceil(n / W) rounds of L seconds, so the best possible speedup over serial (n·L) is n / ceil(n / W).
For 100 items on 32 workers that is 100 / 4 = 25×: the issue's target of 25× *is* the limit,
reachable only by an executor with zero overhead.
"""

from __future__ import annotations

import math

from conquer import figures
from conquer.bench import registry
from conquer.bench.context import Context
from conquer.bench.points import Series, add_speedups, run_cases, timed
from tasks import Job


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    job = Job("download", profile.io_items, profile.io_items, latency=profile.io_latency)
    count = profile.io_workers
    limit = figures.speedup_limit(job, count, cores).value
    rounds = math.ceil(job.chunks / count)
    series = Series(
        "io",
        "I/O-bound download",
        f"download of {job.n} items × {job.latency:g} s, one item per chunk, on every executor with "
        f"{count} workers; serial takes n × latency = {job.n * job.latency:g} s at best, and "
        f"{count} workers need at least ceil({job.chunks}/{count}) = {rounds} rounds of {job.latency:g} s, "
        f"so no executor can beat {limit:g}× serial (the latency limit).",
        parameters={
            "kind": job.kind,
            "n": job.n,
            "chunks": job.chunks,
            "latency": job.latency,
            "workers": count,
            "cores": cores,
        },
    )
    cases = [(job, registry.serial(job.kind))] + [(job, plan) for plan in registry.every_way(job.kind, count)]
    reporter.begin(series, len(cases) * profile.repeats)
    with timed(series):
        series.points = run_cases(cases, context)
    add_speedups(series.points, series.points[0], cores)
    for point in series.points:
        speedup = point.derived["speedup"]
        point.derived["of_limit"] = speedup / limit if speedup else None
    series.derived = {
        "latency_limit_speedup": limit,
        "rounds": rounds,
        "ideal_serial_s": job.n * job.latency,
        "floor_s": rounds * job.latency,
    }
    return series
