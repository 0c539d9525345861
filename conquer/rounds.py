"""The measuring loop of `conquer compare` and of every executor series of `conquer bench`: deploy each
plan's executor once, then run the cases in interleaved rounds — each case once, then each again — so
that a slow spell of a shared machine spreads over all cases instead of landing on one.

A deployment is what an executor sets up once for many runs: the Celery stack, a Redis and worker
processes (`workers.deployment`). It is made before the first round that needs it, kept until the
`Deployments` are closed (a bench run shares one stack among its series) and torn down also on Ctrl-C.
Its start-up time is recorded with the row, never added to a wall time. Every run is metered
(`conquer.usage`): wall time, CPU time of its process tree, steal and other load, load average.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import workers
from conquer.usage import Meter, Sample, deployed_processes
from tasks import Job
from workers import Deployed, ExecutorError, Plan

#: Why a row has no CPU time: its work runs in processes this one cannot see.
OUTSIDE = "not measured: the workers run outside this process tree (an external broker)"


class Deployments:
    """Each plan's deployment, made on first use and torn down when closed (also on Ctrl-C)."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        #: Per plan: its deployment, or why it could not be made.
        self._made: dict[Plan, Deployed | str] = {}

    def __enter__(self) -> Deployments:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stack.close()

    def get(self, plan: Plan) -> Deployed | str:
        if plan not in self._made:
            try:
                self._made[plan] = self._stack.enter_context(workers.deployment(plan))
            except ExecutorError as error:
                self._made[plan] = f"could not deploy {plan.executor}: {error}"
        return self._made[plan]

    def processes(self, but: Plan | None = None) -> list[int]:
        """The pids of every deployment's processes except `but`'s: not part of a run of `but`."""
        return [
            pid
            for plan, made in self._made.items()
            if plan != but and isinstance(made, Deployed)
            for pid in deployed_processes(made) or ()
        ]

    def meter(self, plan: Plan | None = None) -> Meter:
        """A meter for one run of `plan` (or of something deployed nowhere, for None)."""
        made = self._made.get(plan) if plan is not None else None
        inside = not isinstance(made, Deployed) or deployed_processes(made) is not None
        return Meter(self.processes(but=plan), inside=inside)


@dataclass
class Measured:
    """All runs of one case. A run that fails ends the case (`error`); so does a wrong answer
    (`verified` false, `mismatch` says what was wrong): a fast wrong answer is not a figure."""

    job: Job
    plan: Plan
    runs: list[Sample] = field(default_factory=list)
    verified: bool = True
    mismatch: str | None = None
    #: The answer that did not match the check, for `conquer compare`'s exit-7 line.
    wrong_answer: int | None = None
    error: str | None = None
    #: What the executor set up once for all runs (the Celery stack), or None.
    deployment: dict[str, Any] | None = None
    #: Why its runs have no CPU time, or None.
    cpu_note: str | None = None

    @property
    def walls(self) -> list[float]:
        return [run.wall_s for run in self.runs]

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.runs else None

    @property
    def going(self) -> bool:
        return self.error is None and self.verified


def measure(
    cases: Sequence[tuple[Job, Plan]],
    repeats: int,
    deployments: Deployments,
    on_run: Callable[[], None] | None = None,
) -> list[Measured]:
    """Run every case `repeats` times in rounds; `on_run` is called after each (also a skipped one)."""
    rows = [Measured(job, plan) for job, plan in cases]
    for row in rows:  # every deployment before the first round: none starts up while others are timed
        made = deployments.get(row.plan)
        if isinstance(made, str):
            row.error = made
        else:
            row.deployment = made.facts
            row.cpu_note = OUTSIDE if deployed_processes(made) is None else None
    for _ in range(repeats):
        for row in rows:
            made = deployments.get(row.plan)
            if row.going and isinstance(made, Deployed):
                run_once(row, made, deployments.meter(row.plan))
            if on_run:
                on_run()
    return rows


def run_once(row: Measured, made: Deployed, meter: Meter) -> None:
    """One run of the row's case, its sample added to the row — or its failure recorded."""
    try:
        report = workers.run(row.job, row.plan, **made.options)
    except ExecutorError as error:
        row.error = str(error)
        return
    if not report.verified:
        row.verified = False
        row.wrong_answer = report.value
        row.mismatch = f"wrong answer: {report.value} != {report.expected} ({report.check_method})"
        return
    row.runs.append(meter.stop(report.wall_s))
