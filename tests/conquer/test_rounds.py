"""The measuring loop (`conquer.rounds.measure`) over several sites, on sites that record what they
are asked and answer with made-up samples: the order of deployments and runs is the loop's, not a
machine's, so it is checked exactly."""

from __future__ import annotations

from conquer import rounds
from conquer.interpreters import Interpreter
from conquer.usage import Sample
from tasks import Job
from workers import Plan, plan

JOB = Job("sum", 1000)
CASES = [(JOB, plan("sum", "serial", 1)), (JOB, plan("sum", "threads", 2))]


class Recording:
    """A site named `name` that logs each request; `fail_at`: the run (1-based) from which on every run
    fails, as when a runner dies;
    `gil_after`: the GIL's state each run reports (the site says it is off before any run)."""

    def __init__(self, name: str, log: list[tuple[str, ...]], fail_at: int = 0, gil_after: bool = False):
        self.name, self.log, self.fail_at, self.gil_after = name, log, fail_at, gil_after
        self.runs = 0

    @property
    def interpreter(self) -> Interpreter:
        return Interpreter(self.name, "3.13.5", free_threaded=True, gil_enabled=False)

    def prepare(self, plan: Plan) -> rounds.Prepared | str:
        self.log.append(("prepare", self.name, plan.executor))
        return rounds.Prepared()

    def run(self, job: Job, plan: Plan) -> rounds.Outcome:
        self.log.append(("run", self.name, plan.executor))
        self.runs += 1
        if self.fail_at and self.runs >= self.fail_at:
            return rounds.Outcome(error=f"{self.name} died")
        return rounds.Outcome(Sample(1.0, 1.0, 0.0, 0.0, 1.0, None, 0.01, self.gil_after))


def test_every_site_deploys_first_then_the_rounds_interleave_cases_and_sites() -> None:
    log: list[tuple[str, ...]] = []
    rows = rounds.measure(CASES, 2, [Recording("a", log), Recording("b", log)])
    one_round = [("run", site, case) for case in ("serial", "threads") for site in ("a", "b")]
    prepared = [("prepare", site, case) for case in ("serial", "threads") for site in ("a", "b")]
    assert log == prepared + one_round + one_round
    assert [(row.plan.executor, row.site, row.interpreter.executable) for row in rows] == [
        ("serial", 0, "a"), ("serial", 1, "b"), ("threads", 0, "a"), ("threads", 1, "b"),
    ]  # fmt: skip


def test_a_failing_site_ends_its_own_rows_and_the_other_site_goes_on() -> None:
    log: list[tuple[str, ...]] = []
    ticks: list[None] = []
    rows = rounds.measure(
        CASES, 3, [Recording("a", log, fail_at=2), Recording("b", log)], lambda: ticks.append(None)
    )
    # a's second run is its threads row's first (round 1); its serial row fails in round 2.
    assert [row.error for row in rows] == ["a died", None, "a died", None]
    assert [len(row.runs) for row in rows] == [1, 3, 0, 3]
    assert log.count(("run", "a", "serial")) == 2  # a failed row is not run again
    assert log.count(("run", "a", "threads")) == 1
    assert len(ticks) == 3 * len(rows)  # a tick per run, also for the rows no longer run


def test_a_row_says_the_gil_was_on_when_a_run_found_it_on() -> None:
    rows = rounds.measure(CASES, 1, [Recording("off", []), Recording("on", [], gil_after=True)])
    assert [row.gil_enabled for row in rows] == [False, True, False, True]
    assert [row.ran_under.gil_enabled for row in rows] == [False, True, False, True]
    assert all(row.interpreter.gil_enabled is False for row in rows)  # what the site said at first
