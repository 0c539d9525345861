"""What every series of one bench run shares: the profile, the core count, the progress reporter, and
the executors' deployments.

A deployment is what an executor sets up once for many runs — the Celery stack: a Redis and worker
processes (`workers.deployment`). It is started the first time a series needs it and kept for the
rest of the run, so that the series do not each pay for starting (and stopping) the same stack; its
start-up time is recorded with the points, never added to a wall time. Idle, a stack costs little: its
workers block on the broker.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

import workers
from conquer.bench.profiles import Profile
from conquer.bench.progress import Reporter
from workers import Deployed, ExecutorError, Plan


class Deployments:
    """Each plan's deployment, made on first use and torn down when the run ends (also on Ctrl-C)."""

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


@dataclass(frozen=True)
class Context:
    profile: Profile
    cores: int
    reporter: Reporter
    deployments: Deployments
