"""The records a benchmark is made of: a `Point` (one thing measured, several times) and a `Series`
(the points of one question, e.g. "how does CPU-bound work scale with workers?").

A point keeps every sample and reports their median and spread, and — for a timed point — what each
run used and what disturbed it (`conquer.usage`), judged by `conquer.figures`: its `flags` say when
its figure cannot be taken at its word, and what to do. A point whose answer was wrong in any run has
`verified` false, an `error` saying so and no median: a fast wrong answer is not a number.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conquer import compare, figures, machine, rounds
from conquer.figures import Flag
from conquer.usage import Sample
from tasks import Job
from workers import Plan

if TYPE_CHECKING:
    from conquer.bench.context import Context


@dataclass
class Point:
    label: str
    #: What was measured, e.g. {"executor": "processes", "ipc": "queue", "workers": 2, "n": ...}.
    params: dict[str, Any]
    metric: str
    unit: str
    samples: list[float] = field(default_factory=list)
    verified: bool = True
    error: str | None = None
    #: Figures computed from the median (speedup, throughput, ...), filled in by the series.
    derived: dict[str, Any] = field(default_factory=dict)
    #: What the executor set up once for all runs (the Celery stack and its start-up time), if anything.
    deployment: dict[str, Any] | None = None
    #: What each run used and what disturbed it; one for the whole point when a probe measures its
    #: runs in one batch; none for a figure that is not a time.
    runs: list[Sample] = field(default_factory=list)
    #: Why the runs have no CPU time, if they have none.
    cpu_note: str | None = None
    #: Flags on its derived figures (a speedup above its limit, or over a disturbed baseline).
    flags: list[Flag] = field(default_factory=list)
    #: The job an executor point ran (what its speedup limit is computed from); not in the document.
    job: Job | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.verified and bool(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.ok else None

    def disturbance(self) -> figures.Disturbance:
        return figures.disturbance(self.samples, self.runs, machine.cores())

    def disturbed(self) -> list[Flag]:
        """Its flags from its own runs (steal, other load, spread); none without a figure."""
        return figures.disturbed(self.disturbance()) if self.ok else []

    def to_dict(self) -> dict[str, Any]:
        median = self.median
        low = min(self.samples) if self.ok else None
        high = max(self.samples) if self.ok else None
        return {
            "label": self.label,
            "params": self.params,
            "metric": self.metric,
            "unit": self.unit,
            "repeats": len(self.samples),
            "samples": self.samples,
            "median": median,
            "min": low,
            "max": high,
            # The range of the samples as a fraction of their median: 0.05 means max − min = 5 %.
            "spread": (high - low) / median if median and low is not None and high is not None else None,
            "verified": self.verified and self.error is None,
            "error": self.error,
            "derived": self.derived,
            "deployment": self.deployment,
            "cpu_s": figures.median_of([run.cpu_s for run in self.runs]) if self.runs else None,
            "cpu_s_note": self.cpu_note,
            "runs": [run.to_dict() for run in self.runs],
            "disturbance": self.disturbance().to_dict(),
            "flags": [flag.to_dict() for flag in (*self.disturbed(), *self.flags)] if self.ok else [],
        }


@dataclass
class Series:
    name: str
    title: str
    #: One paragraph: what is measured and how (shown in the Markdown table's heading).
    what: str
    parameters: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    #: Parts not measured here, each with the reason (e.g. an executor that is not installed).
    skipped: list[dict[str, str]] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    load_before: list[float] | None = None
    load_after: list[float] | None = None
    duration_s: float = 0.0

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append({"what": what, "reason": reason})

    def find(self, **params: Any) -> Point | None:
        """The first point whose params include all of `params`."""
        for point in self.points:
            if all(point.params.get(key) == value for key, value in params.items()):
                return point
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "what": self.what,
            "parameters": self.parameters,
            "duration_s": self.duration_s,
            "load_average": {"before": self.load_before, "after": self.load_after},
            "skipped": self.skipped,
            "derived": self.derived,
            "points": [point.to_dict() for point in self.points],
        }


@contextmanager
def timed(series: Series) -> Iterator[Series]:
    """Record the machine's load and the wall time around measuring `series`."""
    series.load_before = machine.load_average()
    began = time.perf_counter()
    try:
        yield series
    finally:
        series.duration_s = round(time.perf_counter() - began, 3)
        series.load_after = machine.load_average()


def plan_params(job: Job, plan: Plan) -> dict[str, Any]:
    return {
        "executor": plan.executor,
        "ipc": plan.ipc,
        "start_method": plan.start_method,
        "broker": plan.broker,
        "workers": plan.workers,
        "kind": job.kind,
        "n": job.n,
        "chunks": job.chunks,
        "latency": job.latency if job.spec.io_bound else None,
    }


def run_cases(cases: list[tuple[Job, Plan]], context: Context) -> list[Point]:
    """Every (job, plan) `context.profile.repeats` times in interleaved rounds (`conquer.rounds`), each
    executor deployed once for the whole bench run (`context.deployments`). A case that fails is not
    run again; its point carries the error."""
    rows = rounds.measure(cases, context.profile.repeats, context.deployments, context.reporter.tick)
    return [point_of(row) for row in rows]


def point_of(row: rounds.Measured) -> Point:
    point = Point(compare.label(row.plan), plan_params(row.job, row.plan), "wall_s", "s")
    point.samples, point.runs, point.job = row.walls, row.runs, row.job
    point.verified, point.error = row.verified, row.error or row.mismatch
    point.deployment, point.cpu_note = row.deployment, row.cpu_note
    return point


def add_speedups(points: list[Point], baseline: Point | None, cores: int) -> None:
    """Each point's speedup over `baseline` (serial in the same rounds) into `derived`, and the flags
    on it: above what its job allows on `cores`, or over a disturbed baseline."""
    base = baseline.median if baseline is not None else None
    base_flags = baseline.disturbed() if baseline is not None else []
    for point in points:
        value = figures.speedup(base, point.median)
        point.derived["speedup"] = value
        if point is not baseline and point.job is not None:
            limit = figures.speedup_limit(point.job, point.params["workers"], cores)
            point.flags += figures.speedup_flags(value, limit, base_flags)
