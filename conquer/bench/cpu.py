"""Series `cpu`: CPU-bound jobs (`sum`, `primes`) on every executor and IPC at 1, 2, ..., 2×cores workers.

Speedup is over `serial` measured in the same run. The ideal for CPU-bound work is min(workers, cores):
past the core count, extra workers only take turns. Threads stay near 1× under the GIL.
"""

from __future__ import annotations

from typing import Any

import workers
from conquer import figures
from conquer.bench import registry
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, add_speedups, run_cases, timed
from tasks import Job
from workers import Plan


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    counts = profile.worker_counts(cores)
    jobs = [
        Job("sum", profile.cpu_sum_n, profile.cpu_chunks),
        Job("primes", profile.cpu_primes_n, profile.cpu_chunks),
    ]
    series = Series(
        "cpu",
        "CPU-bound scaling",
        f"Wall time of sum 1..{profile.cpu_sum_n:_} and primes <= {profile.cpu_primes_n:_}, "
        f"{profile.cpu_chunks} chunks each, on every executor and IPC at {counts[0]}..{counts[-1]} "
        f"workers (start method {workers.default_start_method()}); speedup is over serial in the same "
        f"run, and the ideal is min(workers, cores) = min(W, {cores}).",
        parameters={
            "sum_n": profile.cpu_sum_n,
            "primes_n": profile.cpu_primes_n,
            "chunks": profile.cpu_chunks,
            "workers": list(counts),
            "cores": cores,
            "start_method": workers.default_start_method(),
        },
    )
    cases: list[tuple[Job, Plan]] = []
    for job in jobs:
        cases.append((job, registry.serial(job.kind)))
        cases += [(job, plan) for count in counts for plan in registry.every_way(job.kind, count)]
    reporter.begin(series, len(cases) * profile.repeats)
    with timed(series):
        series.points = run_cases(cases, context)
    for job in jobs:
        of_kind = [point for point in series.points if point.params["kind"] == job.kind]
        add_speedups(of_kind, next((p for p in of_kind if p.params["executor"] == "serial"), None), cores)
        for point in of_kind:
            point.derived["efficiency"] = figures.efficiency(job, point.derived["speedup"], cores)
            point.derived["ideal_speedup"] = figures.speedup_limit(job, point.params["workers"], cores).value
    series.derived = {"best": best_speedups(series.points)}
    return series


def best_speedups(points: list[Point]) -> dict[str, dict[str, Any]]:
    """For each kind, the fastest way measured whose speedup is not impossible."""
    best: dict[str, Point] = {}
    for point in points:
        speedup = point.derived.get("speedup")
        if any(flag.flag == figures.IMPOSSIBLE for flag in point.flags):
            continue
        current = best.get(point.params["kind"])
        if speedup is not None and (current is None or speedup > current.derived["speedup"]):
            best[point.params["kind"]] = point
    return {
        kind: {"label": point.label, "workers": point.params["workers"], "speedup": point.derived["speedup"]}
        for kind, point in best.items()
    }
