"""What every series of one bench run shares: the profile, the core count, the reporter, and
the executors' deployments (`conquer.rounds.Deployments`: the Celery stack, started the first time a
series needs it and kept for the rest of the run, so that the series do not each pay for starting and
stopping the same stack; idle, its workers block on the broker and cost little)."""

from __future__ import annotations

from dataclasses import dataclass

from conquer.bench.profiles import Profile
from conquer.bench.reporter import Reporter
from conquer.interpreters import Interpreter
from conquer.rounds import Deployments


@dataclass(frozen=True)
class Context:
    profile: Profile
    cores: int
    reporter: Reporter
    deployments: Deployments
    #: The interpreters `--python` named (the `builds` series runs under each); none: this one.
    pythons: tuple[Interpreter, ...] = ()
