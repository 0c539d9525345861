"""The records a benchmark is made of: a `Point` (one thing measured, several times) and a `Series`
(the points of one question, e.g. "how does CPU-bound work scale with workers?").

A point keeps every sample and reports their median and spread. A point whose answer was wrong in any
run has `verified` false, an `error` saying so and no median: a fast wrong answer is not a number.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import workers
from conquer import compare, machine
from tasks import Job
from workers import ExecutorError, Plan

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

    @property
    def ok(self) -> bool:
        return self.error is None and self.verified and bool(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.ok else None

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
        "workers": plan.workers,
        "kind": job.kind,
        "n": job.n,
        "chunks": job.chunks,
        "latency": job.latency if job.spec.io_bound else None,
    }


def run_cases(cases: list[tuple[Job, Plan]], context: Context) -> list[Point]:
    """Run every (job, plan) `context.profile.repeats` times, in rounds — each case once, then each
    again — so that a slow spell of a shared machine spreads over all cases instead of landing on one.
    A case that fails is not run again; its point carries the error. An executor's deployment (the
    Celery stack) comes from `context.deployments`, set up before the first run."""
    points = [Point(compare.label(plan), plan_params(job, plan), "wall_s", "s") for job, plan in cases]
    for (_, plan), point in zip(cases, points, strict=True):
        setup = context.deployments.get(plan)
        if isinstance(setup, str):
            point.error = setup
        else:
            point.deployment = setup.facts
    for _ in range(context.profile.repeats):
        for (job, plan), point in zip(cases, points, strict=True):
            setup = context.deployments.get(plan)
            if point.error is None and not isinstance(setup, str):
                run_once(job, plan, setup.options, point)
            context.reporter.tick()
    return points


def run_once(job: Job, plan: Plan, options: dict[str, Any], point: Point) -> None:
    """One run of `job` as `plan` says, its wall time added to `point` — or its failure recorded."""
    try:
        report = workers.run(job, plan, **options)
    except ExecutorError as error:
        point.error = str(error)
        return
    point.samples.append(report.wall_s)
    if not report.verified:
        point.verified = False
        point.error = f"wrong answer: {report.value} != {report.expected} ({report.check_method})"
