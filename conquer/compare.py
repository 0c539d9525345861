"""`conquer compare`: the same job on every applicable executor, repeated in interleaved rounds
(`conquer.rounds`), summarised by medians with their range, CPU time and what disturbed them, and
judged (`conquer.figures`): a speedup above what the machine allows, or a row the machine disturbed,
is flagged — never shown as a plain figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conquer import figures, machine, rounds
from conquer.figures import Flag
from tasks import Job
from workers import Plan

#: One row of the comparison: all repeats of one plan.
Row = rounds.Measured


def label(plan: Plan) -> str:
    parts = [plan.executor] + [part for part in (plan.ipc, plan.start_method) if part]
    return "/".join(parts)


def compare(
    job: Job,
    plans: list[Plan],
    repeats: int,
    on_run: Callable[[], None] | None = None,
) -> list[Row]:
    """Run every plan `repeats` times in rounds; each executor's deployment (the Celery stack) is set
    up once before the first round and torn down after the last."""
    with rounds.Deployments() as deployments:
        return rounds.measure([(job, plan) for plan in plans], repeats, deployments, on_run)


def to_dict(job: Job, rows: list[Row], repeats: int) -> dict[str, Any]:
    cores = machine.cores()
    measured = [figures.disturbance(row.walls, row.runs, cores) for row in rows]
    disturbed = [
        figures.disturbed(found) if row.going else [] for row, found in zip(rows, measured, strict=True)
    ]
    serial = next((i for i, row in enumerate(rows) if row.plan.executor == "serial" and row.going), None)

    def result(index: int, row: Row) -> dict[str, Any]:
        baseline = rows[serial].median if serial is not None else None
        speedup = figures.speedup(baseline, row.median) if row.going else None
        limit = figures.speedup_limit(job, row.plan.workers, cores)
        flags: list[Flag] = disturbed[index]
        if serial is not None and index != serial:
            flags = flags + figures.speedup_flags(speedup, limit, disturbed[serial])
        return {
            "executor": row.plan.executor,
            "ipc": row.plan.ipc,
            "start_method": row.plan.start_method,
            "workers": row.plan.workers,
            "wall_s_median": row.median,
            "wall_s": row.walls,
            "wall_s_min": min(row.walls) if row.walls else None,
            "wall_s_max": max(row.walls) if row.walls else None,
            "cpu_s_median": figures.median_of([run.cpu_s for run in row.runs]),
            "cpu_s_note": row.cpu_note,
            "runs": [run.to_dict() for run in row.runs],
            "disturbance": measured[index].to_dict(),
            "speedup": speedup,
            "speedup_limit": limit.value,
            "efficiency": figures.efficiency(job, speedup, cores),
            "flags": [flag.to_dict() for flag in flags],
            "verified": row.verified and row.error is None,
            "error": row.error,
            "deployment": row.deployment,
        }

    return {
        "kind": job.kind,
        "n": job.n,
        "chunks": job.chunks,
        "latency": job.latency if job.spec.io_bound else None,
        "repeats": repeats,
        "machine": machine.facts(),
        "thresholds": figures.THRESHOLDS,
        "results": [result(index, row) for index, row in enumerate(rows)],
    }
