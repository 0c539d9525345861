"""The measuring loop of `conquer compare` and of every executor series of `conquer bench`: deploy each
plan's executor once, then run the cases in interleaved rounds — each case once, then each again — so
that a slow spell of a shared machine spreads over all cases instead of landing on one.

A deployment is what an executor sets up once for many runs: the Celery stack, a Redis and worker
processes (`workers.deployment`). It is made before the first round that needs it, kept until the
`Deployments` are closed (a bench run shares one stack among its series) and torn down also on Ctrl-C.
Its start-up time is recorded with the row, never added to a wall time. Every run is metered
(`conquer.usage`): wall time, CPU time of its process tree, steal and other load, load average, and
whether the GIL was on in the process that ran it.

Where the cases run is a `Site`: this process (`Deployments`), or a runner under another interpreter
(`conquer.remote`, which drives a `Deployments` in that process through `conquer.runner`). Given
several sites, every case runs on each of them in turn, so the rounds interleave the interpreters too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import workers
from conquer import interpreters
from conquer.interpreters import Interpreter
from conquer.usage import Meter, Sample, deployed_processes
from tasks import Job
from workers import Deployed, ExecutorError, Plan

#: Why a row has no CPU time: its work runs in processes this one cannot see.
OUTSIDE = "not measured: the workers run outside this process tree (an external broker)"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A plan deployed: what it set up (`facts`, e.g. the Celery stack), and why its runs have no CPU
    time (`cpu_note`), if they have none."""

    facts: dict[str, Any] | None = None
    cpu_note: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run: its `sample`, or why it has none — it failed (`error`) or its answer was wrong."""

    sample: Sample | None = None
    error: str | None = None
    #: The answer that did not match the check, and what was wrong, in a sentence.
    wrong_answer: int | None = None
    mismatch: str | None = None


class Site(Protocol):
    """Where cases run: this process, or a runner process under another interpreter."""

    @property
    def interpreter(self) -> Interpreter: ...

    def prepare(self, plan: Plan) -> Prepared | str:
        """Deploy `plan` (once; later calls return the same), or say why it cannot be."""
        ...

    def run(self, job: Job, plan: Plan) -> Outcome:
        """One metered run of a prepared plan."""
        ...


class Deployments:
    """Each plan's deployment, made on first use and torn down when closed (also on Ctrl-C): the site
    of the runs made in this process."""

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

    @property
    def interpreter(self) -> Interpreter:
        return interpreters.this()

    def prepare(self, plan: Plan) -> Prepared | str:
        made = self.get(plan)
        if isinstance(made, str):
            return made
        return Prepared(made.facts, OUTSIDE if deployed_processes(made) is None else None)

    def run(self, job: Job, plan: Plan) -> Outcome:
        made = self.get(plan)
        if isinstance(made, str):
            return Outcome(error=made)
        meter = self.meter(plan)
        try:
            report = workers.run(job, plan, **made.options)
        except ExecutorError as error:
            return Outcome(error=str(error))
        if not report.verified:
            mismatch = f"wrong answer: {report.value} != {report.expected} ({report.check_method})"
            return Outcome(wrong_answer=report.value, mismatch=mismatch)
        return Outcome(meter.stop(report.wall_s))


@dataclass
class Measured:
    """All runs of one case. A run that fails ends the case (`error`); so does a wrong answer
    (`verified` false, `mismatch` says what was wrong): a fast wrong answer is not a figure."""

    job: Job
    plan: Plan
    #: Who ran it, as the site said before the first run (the GIL's state there and then).
    interpreter: Interpreter = field(default_factory=interpreters.this)
    #: Which of `measure`'s sites ran it (its index).
    site: int = 0
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

    @property
    def gil_enabled(self) -> bool:
        """Whether the GIL was on in the process that ran it: after any of its runs, if it has runs.
        On after one run is on for the row: its figures are not free-threaded figures."""
        states = [run.gil_enabled for run in self.runs if run.gil_enabled is not None]
        return any(states) if states else self.interpreter.gil_enabled

    @property
    def ran_under(self) -> Interpreter:
        """`interpreter`, with the GIL as its runs found it."""
        return self.interpreter.with_gil(self.gil_enabled)

    def add(self, outcome: Outcome) -> None:
        """Record one run: its sample, or its failure (which ends the row)."""
        if outcome.error is not None:
            self.error = outcome.error
        elif outcome.mismatch is not None:
            self.verified, self.wrong_answer, self.mismatch = False, outcome.wrong_answer, outcome.mismatch
        elif outcome.sample is not None:
            self.runs.append(outcome.sample)


def measure(
    cases: Sequence[tuple[Job, Plan]],
    repeats: int,
    sites: Site | Sequence[Site],
    on_run: Callable[[], None] | None = None,
) -> list[Measured]:
    """Run every case `repeats` times in rounds on each site; `on_run` is called after each run (also
    a skipped one). Rows come case by case, each case's sites side by side, in the rounds' order."""
    places = list(sites) if isinstance(sites, Sequence) else [sites]
    rows = [
        Measured(job, plan, place.interpreter, index)
        for job, plan in cases
        for index, place in enumerate(places)
    ]
    for row in rows:  # every deployment before the first round: none starts up while others are timed
        prepared = places[row.site].prepare(row.plan)
        if isinstance(prepared, str):
            row.error = prepared
        else:
            row.deployment, row.cpu_note = prepared.facts, prepared.cpu_note
    for _ in range(repeats):
        for row in rows:
            if row.going:
                row.add(places[row.site].run(row.job, row.plan))
            if on_run:
                on_run()
    return rows
