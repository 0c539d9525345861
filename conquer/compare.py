"""`conquer compare`: the same job on every applicable executor, repeated, summarised by medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import workers
from conquer import machine
from tasks import Job
from workers import ExecutorError, Plan


@dataclass
class Row:
    """All repeats of one plan. `error` is set if a run failed (later repeats are skipped)."""

    plan: Plan
    walls: list[float] = field(default_factory=list)
    verified: bool = True
    #: An answer that did not match the check (the last one, if repeats differ), for the error line.
    wrong_answer: int | None = None
    error: str | None = None
    #: What the executor set up once for all repeats (the Celery stack), or None.
    deployment: dict[str, Any] | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    @property
    def spread(self) -> float | None:
        return max(self.walls) - min(self.walls) if self.walls else None


def label(plan: Plan) -> str:
    parts = [plan.executor] + [part for part in (plan.ipc, plan.start_method) if part]
    return "/".join(parts)


def compare(
    job: Job,
    plans: list[Plan],
    repeats: int,
    on_run: Callable[[Plan], None] | None = None,
) -> list[Row]:
    """Run every plan `repeats` times, in rounds (every plan once, then again), so that a slow spell
    of the machine spreads over all plans instead of landing on one.

    What an executor must set up first (the Celery stack) is set up once, before the first round, and
    torn down after the last: its start-up time is a deployment cost, reported in `Row.deployment`,
    never part of a run's wall time."""
    rows = [Row(plan) for plan in plans]
    with ExitStack() as deployments:
        options: dict[Plan, dict[str, Any]] = {}
        for row in rows:
            try:
                deployed = deployments.enter_context(workers.deployment(row.plan))
            except ExecutorError as error:
                row.error = str(error)
                continue
            options[row.plan], row.deployment = deployed.options, deployed.facts
        for _ in range(repeats):
            for row in rows:
                if row.error is None:
                    try:
                        report = workers.run(job, row.plan, **options[row.plan])
                    except ExecutorError as error:
                        row.error = str(error)
                    else:
                        row.walls.append(report.wall_s)
                        row.verified = row.verified and report.verified
                        if not report.verified:
                            row.wrong_answer = report.value
                if on_run:
                    on_run(row.plan)
    return rows


def speedups(rows: list[Row]) -> dict[Plan, float | None]:
    baseline = next((row.median for row in rows if row.plan.executor == "serial"), None)
    return {row.plan: (baseline / row.median if baseline and row.median else None) for row in rows}


def to_dict(job: Job, rows: list[Row], repeats: int) -> dict[str, Any]:
    cores = machine.cores()
    ups = speedups(rows)

    def efficiency(plan: Plan) -> float | None:
        speedup = ups[plan]
        return speedup / cores if speedup else None

    return {
        "kind": job.kind,
        "n": job.n,
        "chunks": job.chunks,
        "latency": job.latency if job.spec.io_bound else None,
        "repeats": repeats,
        "machine": machine.facts(),
        "results": [
            {
                "executor": row.plan.executor,
                "ipc": row.plan.ipc,
                "start_method": row.plan.start_method,
                "workers": row.plan.workers,
                "wall_s_median": row.median,
                "wall_s": row.walls,
                "speedup": ups[row.plan],
                "efficiency": efficiency(row.plan),
                "verified": row.verified and row.error is None,
                "error": row.error,
                "deployment": row.deployment,
            }
            for row in rows
        ],
    }
