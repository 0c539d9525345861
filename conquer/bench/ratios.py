"""Series `ratios`: the issues' ratio targets measured exactly as stated, all in one run.

sum 1..10^8 in 16 chunks on `serial`, on `processes` (as many workers as cores, default IPC and start
method, as `conquer run --on processes` runs it) and on `celery` (as many workers as cores), in
interleaved rounds so that all three see the same machine. Gives processes' speedup over serial and
Celery's wall time as a multiple of processes'.
"""

from __future__ import annotations

import workers
from conquer import figures
from conquer.bench import registry
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, add_speedups, run_cases, timed
from tasks import Job


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    job = Job("sum", profile.target_n, profile.target_chunks)
    series = Series(
        "ratios",
        "Target ratios",
        f"sum 1..{job.n:_} in {job.chunks} chunks on serial, processes and celery ({cores} workers each, "
        "as many as cores), in interleaved rounds: processes' speedup over serial, and Celery's wall "
        "time over processes'.",
        parameters={"kind": job.kind, "n": job.n, "chunks": job.chunks, "workers": cores},
    )
    plans = [registry.serial(job.kind), workers.plan(job.kind, "processes", cores)]
    plans += [workers.plan(job.kind, name, cores) for name in registry.present(series, (registry.CELERY,))]
    reporter.begin(series, len(plans) * profile.repeats)
    with timed(series):
        series.points = run_cases([(job, plan) for plan in plans], context)
    by_executor = {point.params["executor"]: point for point in series.points}
    serial, processes, celery = (by_executor.get(name) for name in ("serial", "processes", "celery"))
    add_speedups([point for point in (serial, processes) if point is not None], serial, cores)
    series.derived = {
        "processes_speedup": processes.derived["speedup"] if processes is not None else None,
        # Celery's wall time over processes': processes' "speedup" over Celery, by the same rule.
        "celery_over_processes": figures.speedup(median(celery), median(processes)),
    }
    return series


def median(point: Point | None) -> float | None:
    return point.median if point is not None else None
