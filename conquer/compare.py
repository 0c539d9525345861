"""`conquer compare`: the same job on every applicable executor, repeated in interleaved rounds
(`conquer.rounds`), summarised by medians with their range, CPU time and what disturbed them, and
judged (`conquer.figures`): a speedup above what the machine allows, or a row the machine disturbed,
is flagged — never shown as a plain figure.

With `--python` given (once per interpreter), every executor runs under each interpreter, in a runner
of its own (`conquer.remote`), in the same rounds. Each row's speedup is then over its own build's
serial (threads scale on a free-threaded build), and, beside it, over the GIL build's serial (each
thread is slower there): both are true, and the table shows both. Flags are judged per build."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from conquer import figures, machine, rounds
from conquer.figures import Flag
from conquer.interpreters import Interpreter, names
from tasks import Job
from workers import Plan

#: One row of the comparison: all repeats of one plan under one interpreter.
Row = rounds.Measured


def label(plan: Plan) -> str:
    """`processes/queue/fork`, `celery`; with a broker named (`--broker`), `celery/rabbitmq`."""
    parts = [plan.executor] + [part for part in (plan.ipc, plan.start_method, plan.broker) if part]
    return "/".join(parts)


def row_labels(rows: Sequence[Row]) -> list[str]:
    """Each row's `label`; under several interpreters, with its Python's name: `threads (3.13.5t)`."""
    found = interpreters_of(rows)
    if len(found) < 2:
        return [label(row.plan) for row in rows]
    named = names(found)
    return [f"{label(row.plan)} ({named[row.site]})" for row in rows]


def compare(
    job: Job,
    plans: list[Plan],
    repeats: int,
    on_run: Callable[[], None] | None = None,
    pythons: Sequence[Interpreter] = (),
) -> list[Row]:
    """Run every plan `repeats` times in rounds — in this process, or under each of `pythons` — and
    each executor's deployment (the Celery stack) is set up once per interpreter before the first
    round and torn down after the last."""
    with ExitStack() as stack:
        sites: list[rounds.Site]
        if pythons:
            from conquer.remote import Remote

            sites = [stack.enter_context(Remote(python)) for python in pythons]
        else:
            sites = [stack.enter_context(rounds.Deployments())]
        return rounds.measure([(job, plan) for plan in plans], repeats, sites, on_run)


def interpreters_of(rows: Sequence[Row]) -> list[Interpreter]:
    """Each site's interpreter, in the order given; its GIL on if it was on after any of its runs."""
    found: dict[int, Interpreter] = {}
    for row in rows:
        seen = found.get(row.site)
        gil = row.gil_enabled or (seen is not None and seen.gil_enabled)
        found[row.site] = row.interpreter.with_gil(gil)
    return [found[site] for site in sorted(found)]


def to_dict(job: Job, rows: list[Row], repeats: int) -> dict[str, Any]:
    cores = machine.cores()
    measured = [figures.disturbance(row.walls, row.runs, cores) for row in rows]
    disturbed = [
        figures.disturbed(found) if row.going else [] for row, found in zip(rows, measured, strict=True)
    ]
    serial: dict[int, int] = {}  # per site: its serial row, if it went
    for index, row in enumerate(rows):
        if row.plan.executor == "serial" and row.going:
            serial.setdefault(row.site, index)
    interpreters = interpreters_of(rows)
    # Several interpreters: the first GIL build among them is the baseline the builds share.
    gil_site = next((site for site, found in enumerate(interpreters) if not found.free_threaded), None)
    gil_serial = serial.get(gil_site) if len(interpreters) > 1 and gil_site is not None else None
    gil_build = interpreters[gil_site] if gil_serial is not None and gil_site is not None else None

    def result(index: int, row: Row) -> dict[str, Any]:
        own = serial.get(row.site)
        speedup = figures.speedup(rows[own].median, row.median) if own is not None and row.going else None
        limit = figures.speedup_limit(job, row.plan.workers, cores)
        flags: list[Flag] = disturbed[index]
        if own is not None and index != own:
            flags = flags + figures.speedup_flags(speedup, limit, disturbed[own])
        across = None
        if gil_serial is not None and row.going:
            across = figures.speedup(rows[gil_serial].median, row.median)
            if row.site != gil_site:
                flags = flags + figures.baseline_flags(across, disturbed[gil_serial], figures.GIL_SERIAL)
        return {
            "executor": row.plan.executor,
            "ipc": row.plan.ipc,
            "start_method": row.plan.start_method,
            "broker": row.plan.broker,
            "workers": row.plan.workers,
            "interpreter": row.ran_under.to_dict(),
            "interpreter_index": row.site,
            "wall_s_median": row.median,
            "wall_s": row.walls,
            "wall_s_min": min(row.walls) if row.walls else None,
            "wall_s_max": max(row.walls) if row.walls else None,
            "cpu_s_median": figures.median_of([run.cpu_s for run in row.runs]),
            "cpu_s_note": row.cpu_note,
            "runs": [run.to_dict() for run in row.runs],
            "disturbance": measured[index].to_dict(),
            "speedup": speedup,
            "speedup_vs_gil_serial": across,
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
        "interpreters": [found.to_dict() for found in interpreters],
        "gil_serial_interpreter": gil_build.to_dict() if gil_build is not None else None,
        "thresholds": figures.THRESHOLDS,
        "results": [result(index, row) for index, row in enumerate(rows)],
    }
