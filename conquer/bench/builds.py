"""Series `builds`: the GIL lesson under each interpreter given — `sum` and `primes` on serial, threads,
processes and Celery (prefork pool and threads pool) at 1..2×cores workers.

Every interpreter (`conquer bench --python PATH`, repeatable; none given: this one only, and the series
says so) runs its rows in runners of its own (`conquer.remote`): one with the prefork pool for Celery,
one with the threads pool (the pool is the runner's CONQUER_WORKER_POOL, so its `celery` executor
deploys that pool: 1 worker × W processes, or 1 worker × W threads). Serial, threads and processes run
in the prefork runner only: the pool does not touch them. The rounds interleave every row of every
interpreter, so a slow spell of the machine spreads over all of them.

Each point's speedup is over its own build's serial (`speedup`: threads scale on a free-threaded
build) and over the GIL build's serial (`speedup_over_gil_serial`: each thread is slower there), and
each point says which build ran it and whether the GIL was on during its runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import workers
from conquer import figures, interpreters, rounds
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, add_speedups, point_of, timed
from tasks import Job

#: What runs in each build: every executor the lesson needs (serial is each build's baseline).
EXECUTORS = ("threads", "processes", "celery")
#: The Celery pools compared: processes (each with its own GIL) and threads of one worker process.
POOLS = ("prefork", "threads")


@dataclasses.dataclass(frozen=True)
class Site:
    """A runner: which interpreter (its index among those measured) and which Celery pool."""

    remote: rounds.Site
    build: int
    pool: str


def measure(context: Context) -> Series:
    from conquer.remote import Remote
    from workers.celery.settings import ENV_POOL

    profile, cores, reporter = context.profile, context.cores, context.reporter
    counts = profile.worker_counts(cores)
    if not profile.every_worker_count:  # quick and tiny: the lesson's one row, W = cores, keeps them fast
        counts = (min(cores, counts[-1]),)
    pythons = list(context.pythons) or [interpreters.this()]
    jobs = [
        Job("sum", profile.cpu_sum_n, profile.cpu_chunks),
        Job("primes", profile.cpu_primes_n, profile.cpu_chunks),
    ]
    given = "the interpreters given" if context.pythons else "this interpreter only (no --python given)"
    series = Series(
        "builds",
        "The GIL lesson, build by build",
        f"Wall time of sum 1..{profile.cpu_sum_n:_} and primes <= {profile.cpu_primes_n:_}, "
        f"{profile.cpu_chunks} chunks each, on serial, threads, processes and Celery (prefork pool: "
        f"processes; threads pool: threads of one worker) at {counts[0]}..{counts[-1]} workers, under "
        f"{given}, in interleaved rounds; speedup is over the same build's serial, and beside it over "
        f"the GIL build's serial.",
        parameters={
            "sum_n": profile.cpu_sum_n,
            "primes_n": profile.cpu_primes_n,
            "chunks": profile.cpu_chunks,
            "workers": list(counts),
            "cores": cores,
            "pools": list(POOLS),
            "interpreters_given": bool(context.pythons),
        },
    )
    with ExitStack() as stack:
        sites = [
            Site(stack.enter_context(Remote(python, env={ENV_POOL: pool})), build, pool)
            for build, python in enumerate(pythons)
            for pool in POOLS
        ]
        rows: list[tuple[rounds.Measured, Site]] = []
        for job in jobs:
            plans = [workers.plan(job.kind, "serial", 1)]
            plans += [workers.plan(job.kind, name, count) for count in counts for name in EXECUTORS]
            for plan in plans:
                for site in sites:  # each case's builds side by side, so the rounds interleave them
                    if site.pool == "prefork" or plan.executor == "celery":
                        rows.append((rounds.Measured(job, plan, site.remote.interpreter, site.build), site))
        reporter.begin(series, len(rows) * profile.repeats)
        with timed(series):
            run_rows(rows, profile.repeats, reporter.tick)
    series.points = [point(row, site, interpreters.names(pythons)) for row, site in rows]
    speedups(series, jobs, len(pythons), cores)
    series.parameters["interpreters"] = [python.to_dict() for python in pythons]
    return series


def run_rows(rows: list[tuple[rounds.Measured, Site]], repeats: int, on_run: Callable[[], None]) -> None:
    """`conquer.rounds.measure` over rows that each name their site: every deployment first, then
    each row once per round."""
    for row, site in rows:
        prepared = site.remote.prepare(row.plan)
        if isinstance(prepared, str):
            row.error = prepared
        else:
            row.deployment, row.cpu_note = prepared.facts, prepared.cpu_note
    for _ in range(repeats):
        for row, site in rows:
            if row.going:
                row.add(site.remote.run(row.job, row.plan))
            on_run()


def point(row: rounds.Measured, site: Site, names: list[str]) -> Point:
    found = point_of(row)
    ran = row.ran_under
    build = "free-threaded" if ran.free_threaded else "GIL"
    gil = "GIL off" if not ran.gil_enabled else "GIL on"
    pool = f" ({site.pool} pool)" if row.plan.executor == "celery" else ""
    found.label = f"{found.label}{pool} ×{row.plan.workers} — {names[site.build]} {build}, {gil}"
    found.params["pool"] = site.pool if row.plan.executor == "celery" else None
    found.params["build"] = site.build
    found.params["interpreter"] = ran.to_dict()
    return found


def speedups(series: Series, jobs: list[Job], builds: int, cores: int) -> None:
    """Each point's speedup over its own build's serial (with the flags `cpu` gives), and over the
    serial of the first build that ran with the GIL on, if any did."""
    derived: dict[str, Any] = {}
    for job in jobs:
        of_kind = [p for p in series.points if p.params["kind"] == job.kind]
        serials = {p.params["build"]: p for p in of_kind if p.params["executor"] == "serial"}
        gil_serial = next(
            (p for _, p in sorted(serials.items()) if p.params["interpreter"]["gil_enabled"]), None
        )
        for build in range(builds):
            own = [p for p in of_kind if p.params["build"] == build]
            add_speedups(own, serials.get(build), cores)
        base = gil_serial.median if gil_serial is not None else None
        for p in of_kind:
            p.derived["speedup_over_gil_serial"] = figures.speedup(base, p.median)
        # The single-thread cost of each build: its serial time over the GIL build's (by build index).
        derived[job.kind] = {
            "serial_over_gil_serial": {
                str(build): round(serial.median / base, 3)
                for build, serial in serials.items()
                if base and serial.median is not None
            }
        }
    series.derived = derived
