"""Series `ratios`: the issues' ratio targets measured exactly as stated, all in one run.

sum 1..10^8 in 16 chunks on `serial`, on `processes` (as many workers as cores, default IPC and start
method, as `conquer run --on processes` runs it) and on `celery` (as many workers as cores) — on its
embedded Redis and, where rabbitmq-server is installed, on a private RabbitMQ node — in interleaved
rounds so that all of them see the same machine. Gives processes' speedup over serial and Celery's
wall time, on each broker, as a multiple of processes'.
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
        "as many as cores; celery on its embedded Redis, and as celery/rabbitmq on a private RabbitMQ "
        "node), in interleaved rounds: processes' speedup over serial, and Celery's wall time over "
        "processes' on each broker.",
        parameters={"kind": job.kind, "n": job.n, "chunks": job.chunks, "workers": cores},
    )
    plans = [registry.serial(job.kind), workers.plan(job.kind, "processes", cores)]
    plans += [workers.plan(job.kind, name, cores) for name in registry.present(series, (registry.CELERY,))]
    plans = registry.with_rabbitmq(series, plans)
    reporter.begin(series, len(plans) * profile.repeats)
    with timed(series):
        series.points = run_cases([(job, plan) for plan in plans], context)
    serial, processes = series.find(executor="serial"), series.find(executor="processes")
    celery = series.find(executor=registry.CELERY, broker=None)
    on_rabbitmq = series.find(executor=registry.CELERY, broker=registry.RABBITMQ)
    add_speedups([point for point in (serial, processes) if point is not None], serial, cores)
    series.derived = {
        "processes_speedup": processes.derived["speedup"] if processes is not None else None,
        # Celery's wall time over processes': processes' "speedup" over Celery, by the same rule.
        "celery_over_processes": figures.speedup(median(celery), median(processes)),
        "celery_rabbitmq_over_processes": figures.speedup(median(on_rabbitmq), median(processes)),
    }
    return series


def median(point: Point | None) -> float | None:
    return point.median if point is not None else None
