"""What every `conquer` command shares: its options, how a job is built from them, the one-line
failures, and the Celery settings lookup. Every command module imports this one; it imports no
command (so no import cycle), and only click and light modules at start-up (`conquer --help` is fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conquer.exitcodes import ExitCode
from conquer.numbers import FiniteFloatRange
from tasks import KINDS, faults

if TYPE_CHECKING:
    from tasks import Job
    from tasks.settings import Settings

DEFAULT_CHUNKS = 16

F = TypeVar("F", bound=Callable[..., Any])


class Failure(Exception):
    """An expected failure: printed as one line, exits with its ExitCode."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def wrong_answer(answer: str, expected: int, check_method: str, job_id: str | None = None) -> Failure:
    """Exit 7's one line: the answer, and what the independent check says instead."""
    job = f"job {job_id}: " if job_id else ""
    return Failure(
        f"{job}wrong answer: {answer} does not match the independent check, {expected} ({check_method})",
        ExitCode.WRONG_ANSWER,
    )


# ------------------------------------------------------------------------------------ values


def count(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: a count written as 100000000, 100_000_000 or 1e8."""
    if value is None:
        return None
    from conquer.numbers import parse_count

    try:
        return parse_count(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def fault_spec(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a fault spec (`tasks.faults`), returned in canonical form; ITEM may be written
    as any count (`1e6`)."""
    if value is None:
        return None
    from conquer.numbers import parse_count
    from tasks.faults import FaultError, parse

    try:
        return parse(value, number=parse_count).spec
    except FaultError as error:
        raise click.BadParameter(str(error), param=param) from None


# ----------------------------------------------------------------------------------- options

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def job_arguments(function: F) -> F:
    """KIND and N, the job every job command takes."""
    function = click.argument("n", callback=count, metavar="N")(function)
    return click.argument("kind", type=click.Choice(tuple(KINDS)), metavar="KIND")(function)


CHUNKS_OPTION = click.option(
    "--chunks",
    "-k",
    callback=count,
    default=None,
    help=f"Ranges to cut 1..N into [default: {DEFAULT_CHUNKS}, or N if smaller].",
)
WORKERS_OPTION = click.option(
    "--workers",
    "-w",
    callback=count,
    default=None,
    help="Threads/processes/coroutines to run them on [default: the cores here].",
)
LATENCY_OPTION = click.option(
    "--latency",
    type=FiniteFloatRange(0, 10),
    default=0.1,
    show_default=True,
    help="download only: seconds each item waits.",
)
FAIL_AT_OPTION = click.option(
    "--fail-at",
    callback=count,
    default=None,
    metavar="ITEM",
    help="Fault injection: the chunk holding ITEM raises (the same as --fault fail@ITEM).",
)
FAULT_OPTION = click.option("--fault", callback=fault_spec, default=None, metavar="SPEC", help=faults.HELP)


# -------------------------------------------------------------------------------- job, workers


def build_job(
    kind: str,
    n: int,
    chunks: int | None,
    latency: float,
    fail_at: int | None = None,
    fault: str | None = None,
) -> Job:
    """The job the options describe; one that cannot be built is bad input (exit 2)."""
    from tasks import Job, JobError

    if fail_at is not None and fault is not None:
        raise click.UsageError("give --fail-at or --fault, not both (--fail-at ITEM is --fault fail@ITEM)")
    try:
        return Job(
            kind,
            n,
            chunks if chunks is not None else min(DEFAULT_CHUNKS, max(n, 1)),
            latency=latency,
            fail_at=fail_at,
            fault=fault,
        )
    except JobError as error:
        raise click.UsageError(str(error)) from None


def default_workers() -> int:
    from conquer.machine import cores

    return cores()


# ------------------------------------------------------------------------------------ settings


def celery_settings() -> Settings:
    """This process's Celery settings (`tasks.settings`); a variable that cannot work is bad input
    (exit 2), read before anything is started or sent."""
    from tasks.settings import ENV_BACKEND, ENV_BROKER, SettingsError, settings

    try:
        found = settings()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    for name, url in ((ENV_BROKER, found.broker_url), (ENV_BACKEND, found.result_backend)):
        _check_redis_url(name, url)
    return found


def _check_redis_url(name: str, url: str) -> None:
    """Refuse a Redis URL (whose scheme and database Settings checked) that the client cannot even
    build a connection from (a port that is not a number, an unknown option...): bad input, not an
    unreachable broker."""
    from tasks.progress import redis_client
    from tasks.settings import mask

    try:
        client = redis_client(url)
        try:
            client.connection_pool.make_connection()  # what the first command would use; not connected
        finally:
            client.close()
    except (ValueError, TypeError) as error:
        # The parser's reason quotes parts of the URL: of one that holds a password, only the masked URL.
        reason = f": {error}" if "@" not in url else ""
        raise click.UsageError(f"{name} is not a usable Redis URL, {mask(url)!r}{reason}") from None
