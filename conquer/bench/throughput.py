"""Series `trivial`: how many chunks per second each executor moves when a chunk is almost no work.

sum 1..N in N chunks of one item each: the time is all messaging — the range out, the result back, the
bookkeeping in between — so chunks per second is the executor's ceiling for fine-grained work. Serial
(no messages at all) is the reference. Celery runs on its embedded Redis and, where rabbitmq-server
is installed, on a private RabbitMQ node too (`celery/rabbitmq`), in the same rounds.
"""

from __future__ import annotations

from conquer.bench import registry
from conquer.bench.context import Context
from conquer.bench.points import Series, run_cases, timed
from tasks import Job


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    job = Job("sum", profile.trivial_chunks, profile.trivial_chunks)
    series = Series(
        "trivial",
        "Trivial-chunk throughput",
        f"sum 1..{job.n} in {job.chunks} chunks of one item each on every executor with {cores} workers "
        "(celery on its embedded Redis, and as celery/rabbitmq on a private RabbitMQ node): chunks per "
        "second = chunks / median wall time, all of it messaging overhead.",
        parameters={"kind": job.kind, "n": job.n, "chunks": job.chunks, "workers": cores},
    )
    plans = registry.with_rabbitmq(series, registry.every_way(job.kind, cores))
    cases = [(job, registry.serial(job.kind))] + [(job, plan) for plan in plans]
    reporter.begin(series, len(cases) * profile.repeats)
    with timed(series):
        series.points = run_cases(cases, context)
    for point in series.points:
        median = point.median
        point.derived = {"chunks_per_s": job.chunks / median if median else None}
    return series
