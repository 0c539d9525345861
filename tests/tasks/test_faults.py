"""Fault injection (`tasks.faults`): specs that parse or are refused with a reason, faults that strike
only the chunk holding their item, transient faults that heal, stalls that a signal's exception ends
(slow) or doesn't (stuck), partials that lie (corrupt), and `--fault` on the command line. The
drills in tests/drills/test_worker_faults.py run these faults through real workers; here only the
corrupt fault does, to show every command that prints an answer exit 7 on a wrong one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conquer.exitcodes import ExitCode
from tasks import InjectedFault, Job, JobError, TransientFault, check, chunk_at, run_chunk, split
from tasks.faults import (
    ATTEMPTS_MAX,
    CORRUPT,
    FAIL,
    MODES,
    PLAIN,
    SECONDS_MAX,
    SLOW,
    STUCK,
    TRANSIENT,
    Fault,
    FaultError,
    corrupt,
    parse,
    strike,
    strike_async,
)
from tests.conftest import Stack, conquer, one_line
from workers import ChunkError, Plan
from workers import run as run_on

# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("fail@600", Fault(FAIL, 600)),
        ("transient:2@600", Fault(TRANSIENT, 600, 2)),
        ("slow:30@1", Fault(SLOW, 1, 30)),
        ("stuck:0.5@1_000", Fault(STUCK, 1000, 0.5)),
        ("  Transient:1@7 ", Fault(TRANSIENT, 7, 1)),
        ("corrupt@1e3", Fault(CORRUPT, 1000)),
    ],
)
def test_a_spec_parses_into_its_fault(text: str, fault: Fault) -> None:
    assert parse(text, number=lambda item: int(float(item))) == fault


@st.composite
def faults(draw: st.DrawFn) -> Fault:
    mode = draw(st.sampled_from(MODES))
    item = draw(st.integers(1, 4_000_000_000))
    if mode in PLAIN:
        return Fault(mode, item)
    if mode == TRANSIENT:
        return Fault(mode, item, draw(st.integers(1, ATTEMPTS_MAX)))
    return Fault(mode, item, draw(st.sampled_from([0.001, 0.5, 2, 30, SECONDS_MAX])))


@given(faults())
def test_the_canonical_spec_parses_back_to_the_same_fault_and_stays_a_few_bytes(fault: Fault) -> None:
    assert parse(fault.spec) == fault
    assert len(fault.spec) <= len("transient:100@4000000000")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must be one of fail@ITEM, transient:K@ITEM"),
        ("600", "must be one of"),
        ("boom@600", "must be one of"),
        ("fail@", "must be one of"),
        ("fail@six", "ITEM must be a whole number"),
        ("fail:2@600", "fail takes no amount"),
        ("corrupt:1@600", "corrupt takes no amount"),
        ("transient@600", "transient needs K"),
        ("transient:0@600", "K must be between 1 and 100"),
        ("transient:101@600", "K must be between 1 and 100"),
        ("transient:1.5@600", "K must be a whole number"),
        ("slow@600", "slow needs S"),
        ("slow:0@600", "S must be more than 0 and at most 600 s"),
        ("slow:-1@600", "S must be more than 0"),
        ("slow:nan@600", "S must be more than 0"),
        ("stuck:inf@600", "S must be more than 0"),
        ("stuck:601@600", "at most 600 s"),
        ("slow:soon@600", "S must be a number of seconds"),
    ],
)
def test_a_bad_spec_is_refused_with_one_line_saying_why(text: str, reason: str) -> None:
    with pytest.raises(FaultError, match=reason) as error:
        parse(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"fault": "fail@101"}, r"ITEM must be in 1..100, got 101"),
        ({"fault": "slow:1@0"}, r"ITEM must be in 1..100, got 0"),
        ({"fault": "transient:x@5"}, "K must be a whole number"),
        ({"fault": "fail@5", "fail_at": 5}, "either fail-at or a fault, not both"),
    ],
)
def test_a_job_refuses_a_fault_it_cannot_hold(arguments: dict[str, object], reason: str) -> None:
    with pytest.raises(JobError, match=reason):
        Job("sum", 100, 4, **arguments)  # type: ignore[arg-type]


def test_fail_at_is_the_fail_fault_said_shorter_and_the_job_keeps_one_fault_field() -> None:
    shorthand = Job("sum", 100, 4, fail_at=30)
    assert shorthand == Job("sum", 100, 4, fault="fail@30")
    assert shorthand.fault == "fail@30"
    assert [field.name for field in dataclasses.fields(Job)] == ["kind", "n", "chunks", "latency", "fault"]


def test_fail_at_travels_as_the_fail_fault_and_every_chunk_carries_the_same_few_bytes() -> None:
    assert {chunk.fault for chunk in split(Job("sum", 100, 4, fail_at=30))} == {"fail@30"}
    assert {chunk.fault for chunk in split(Job("sum", 100, 4, fault=" Slow:2.50@30"))} == {"slow:2.5@30"}
    assert {chunk.fault for chunk in split(Job("sum", 100, 4))} == {None}
    largest = 4_000_000_000
    message = json.dumps(chunk_at(Job("sum", largest, 2, fault=f"transient:100@{largest}"), 1).to_message())
    assert len(message) < 200


# ---------------------------------------------------------------------------------------- striking


@pytest.mark.parametrize("spec", ["fail@30", "transient:1@30"])
def test_a_fault_strikes_only_the_chunk_holding_its_item(spec: str) -> None:
    job = Job("sum", 100, 4, fault=spec)
    struck = []
    for chunk in split(job):
        try:
            run_chunk(chunk)
        except (InjectedFault, TransientFault):
            struck.append(chunk.index)
    assert struck == [chunk.index for chunk in split(job) if chunk.start <= 30 < chunk.stop]


def test_a_fail_fault_raises_on_every_attempt() -> None:
    for attempt in range(5):
        with pytest.raises(InjectedFault, match=r"^injected fault at item 30$"):
            strike("fail@30", 26, 51, attempt=attempt)


def test_a_transient_fault_fails_its_first_k_attempts_then_the_chunk_computes_its_value() -> None:
    job = Job("sum", 100, 4, fault="transient:2@30")
    chunk = chunk_at(job, 1)
    for attempt in (0, 1):
        with pytest.raises(TransientFault, match=rf"attempt {attempt + 1}; the first 2 fail"):
            run_chunk(chunk, attempt=attempt)
    clean = chunk_at(Job("sum", 100, 4), 1)
    assert run_chunk(chunk, attempt=2) == run_chunk(clean)


def test_in_host_executors_do_not_retry_a_transient_fault_the_run_fails_naming_the_chunk() -> None:
    job = Job("sum", 100, 4, fault="transient:1@30")
    with pytest.raises(ChunkError, match=r"^chunk 1 \[26, 51\) failed: TransientFault: .*attempt 1;"):
        run_on(job, Plan("serial", 1))


def test_a_slow_fault_only_delays_an_in_host_run_whose_answer_stays_exact() -> None:
    job = Job("sum", 100, 4, fault="slow:0.2@30")
    began = time.monotonic()
    report = run_on(job, Plan("thread-pool", 2))
    assert time.monotonic() - began >= 0.2  # the stall happened (a lower bound: sleep guarantees it)
    assert report.value == check(job)


@pytest.mark.parametrize("kind", ["sum", "primes", "download"])
def test_a_corrupt_fault_makes_only_its_chunk_return_a_wrong_partial_on_every_attempt(kind: str) -> None:
    job = Job(kind, 100, 4, latency=0.0, fault="corrupt@30")
    clean = Job(kind, 100, 4, latency=0.0)
    for chunk, right in zip(split(job), split(clean), strict=True):
        holds = chunk.start <= 30 < chunk.stop
        for attempt in (0, 3):
            assert run_chunk(chunk, attempt=attempt) == run_chunk(right) + holds
    assert corrupt(None, 26, 51, 7) == corrupt("fail@30", 26, 51, 7) == corrupt("corrupt@60", 26, 51, 7) == 7


@pytest.mark.parametrize(
    "plan", [Plan("serial", 1), Plan("threads", 2), Plan("processes", 2, "pipe"), Plan("asyncio", 2)]
)
def test_no_executor_can_see_a_corrupt_partial_only_the_check_does(plan: Plan) -> None:
    job = Job("download", 40, 4, latency=0.0, fault="corrupt@30")
    report = run_on(job, plan)
    assert (report.value, report.expected, report.verified) == (check(job) + 1, check(job), False)


class Interrupted(Exception):
    """What a signal handler raises here, as Celery's soft time limit raises SoftTimeLimitExceeded."""


@pytest.fixture
def interrupt_after() -> Iterator[None]:
    """SIGALRM raises Interrupted in 0.05 s — a stand-in for the soft time limit's signal."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.usefixtures("interrupt_after")
def test_a_slow_chunk_is_ended_by_the_exception_a_signal_handler_raises() -> None:
    began = time.monotonic()
    with pytest.raises(Interrupted):
        strike("slow:30@30", 26, 51)
    assert time.monotonic() - began < 30


@pytest.mark.usefixtures("interrupt_after")
def test_a_stuck_chunk_swallows_that_exception_and_stalls_its_full_time() -> None:
    began = time.monotonic()
    strike("stuck:0.3@30", 26, 51)  # no Interrupted gets out
    assert time.monotonic() - began >= 0.3


def test_the_async_stall_yields_to_the_event_loop() -> None:
    """Once the stall has started, this coroutine runs again before the stall is over (a blocking
    sleep would finish the stall before anything else ran)."""

    async def stall_is_running_when_we_look() -> bool:
        stall = asyncio.create_task(strike_async("slow:0.2@30", 26, 51))
        await asyncio.sleep(0)  # the stall task starts
        await asyncio.sleep(0)
        running = not stall.done()
        await stall
        return running

    assert asyncio.run(stall_is_running_when_we_look())


# ------------------------------------------------------------------------------ the command line

UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["run", "sum", "100", "--fault", "boom@5"], "must be one of fail@ITEM"),
        (["run", "sum", "100", "--fault", "transient:0@5"], "K must be between 1 and 100"),
        (["run", "sum", "100", "--fault", "slow:2@101"], "ITEM must be in 1..100, got 101"),
        (["run", "sum", "100", "--fault", "fail@5", "--fail-at", "5"], "give --fail-at or --fault, not both"),
        (["submit", "sum", "100", "--fault", "stuck:1e9@5"], "at most 600 s"),
        (["submit", "sum", "1e6", "--fault", "transient:2@2e6"], "ITEM must be in 1..1000000, got 2000000"),
    ],
)
def test_a_bad_fault_option_exits_2_with_one_line_before_anything_is_sent(
    arguments: list[str], reason: str
) -> None:
    """The broker URL is unreachable: an exit of 2 (not 3) proves nothing was sent."""
    result = conquer(*arguments, env={"CELERY_BROKER_URL": UNREACHABLE})
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_run_with_a_fault_fails_naming_the_chunk_and_the_item_written_as_a_count() -> None:
    result = conquer("run", "sum", "1e6", "--chunks", "4", "--fault", "fail@6e5")
    assert result.returncode == ExitCode.JOB_FAILED
    assert result.stderr.strip() == (
        "conquer: chunk 2 [500001, 750001) failed: InjectedFault: injected fault at item 600000"
    )


def test_celery_retries_the_transient_fault_only_with_a_small_cap_and_exponential_backoff() -> None:
    from workers.celery.app import CHUNK_RETRIES, CHUNK_TASK, make_app
    from workers.celery.settings import Settings

    app = make_app(Settings(key_prefix="t"))
    chunk = app.tasks[CHUNK_TASK]
    assert chunk.autoretry_for == (TransientFault,)  # never InjectedFault: a real error won't heal
    assert chunk.max_retries == CHUNK_RETRIES == 3
    assert chunk.retry_backoff == 1
    assert chunk.retry_jitter is False
    app.close()


# ----------------------------------------------------------------- a wrong answer: exit 7, everywhere

#: A job whose chunk 2 returns one more than it should: 1 + ... + 1000 = 500500, answered as 500501.
CORRUPT_JOB = ("sum", "1000", "--chunks", "4", "--fault", "corrupt@600")
WRONG = "wrong answer: 500501 does not match the independent check, 500500 (n(n+1)/2)"


@pytest.mark.parametrize(
    ("command", "line", "shown"),
    [
        (["run", *CORRUPT_JOB, "--on", "celery"], f"conquer: {WRONG}", "✗ MISMATCH"),
        (["run", *CORRUPT_JOB, "--on", "celery", "--json"], f"conquer: {WRONG}", '"verified": false'),
        (
            ["compare", *CORRUPT_JOB, "--executors", "celery", "--repeats", "1"],
            f"conquer: {WRONG.replace('500501', '500501 from serial, celery')}",
            "✗ MISMATCH",
        ),
    ],
    ids=["run", "run --json", "compare"],
)
def test_a_wrong_answer_exits_7_with_one_line_naming_the_answer_and_the_check(
    celery_stack: Stack, command: list[str], line: str, shown: str
) -> None:
    result = conquer(*command, env=celery_stack.env)
    assert result.returncode == ExitCode.WRONG_ANSWER, result.stderr
    assert one_line(result.stderr) == line
    assert shown in result.stdout  # the report is printed as always, before the error


def test_a_wrong_answer_exits_7_from_submit_wait_and_from_result(celery_stack: Stack) -> None:
    waited = conquer("submit", *CORRUPT_JOB, "--wait", "--timeout", "60", env=celery_stack.env)
    assert waited.returncode == ExitCode.WRONG_ANSWER, waited.stderr
    line = re.fullmatch(rf"conquer: job ([0-9a-f]{{16}}): {re.escape(WRONG)}", one_line(waited.stderr))
    assert line, waited.stderr
    assert "✗ MISMATCH" in waited.stdout
    asked = conquer("result", line.group(1), "--timeout", "60", "--json", env=celery_stack.env)
    assert asked.returncode == ExitCode.WRONG_ANSWER, asked.stderr
    assert one_line(asked.stderr) == one_line(waited.stderr)
    assert json.loads(asked.stdout)["verified"] is False
