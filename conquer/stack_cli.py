"""`conquer submit / status / result / cancel / workers`: driving a Celery stack from the shell.

The stack is whatever CELERY_BROKER_URL points at — `docker compose up`, `conquer up`, or workers you
started yourself with `celery -A tasks worker` (unset, it is Celery's default, redis://localhost:6379/0).
Every command checks that Redis answers before anything else (exit 3 within 5 s, URL printed with
its password masked), waits only up to a deadline (exit 4, printing the job id to ask again with),
and refuses bad input — a malformed job id included — before it contacts the broker (exit 2).

Usage::

    conquer up --workers 2                      # or: docker compose up (see conquer.up_cli)
    conquer submit sum 1e8 --wait
    conquer submit primes 2e6 --chunks 64       # prints the job id at once
    conquer status JOB_ID
    conquer result JOB_ID --timeout 60
    conquer cancel JOB_ID
    conquer workers
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from conquer.exitcodes import ExitCode
from conquer.options import (
    CHUNKS_OPTION,
    FAIL_AT_OPTION,
    JSON_OPTION,
    LATENCY_OPTION,
    Failure,
    build_job,
    celery_settings,
    command,
    fault_option,
    job_arguments,
    kinds_help,
    seconds_option,
    wrong_answer,
)

if TYPE_CHECKING:
    from workers.celery.client import Client
    from workers.celery.jobstore import JobStatus
    from workers.celery.settings import Settings

#: `conquer submit --wait` and `conquer result` give up after this long unless told otherwise.
WAIT_DEFAULT_S = 600.0
RESULT_DEFAULT_S = 30.0
#: `submit` sends nothing, and `result` does not wait for a queued job, unless a worker consuming the
#: queue answers within this long (a prefork worker answers in milliseconds, however busy its pool).
WORKER_ANSWER_S = 3.0
TIMEOUT_MAX_S = 7 * 24 * 3600.0


def _job_id(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    from workers.celery.client import check_job_id

    try:
        return check_job_id(value.strip().lower())
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


JOB_ID_ARGUMENT = click.argument("job_id", metavar="JOB_ID", callback=_job_id)


def stack_variables() -> list[tuple[str, str]]:
    """What every command here reads to find the stack."""
    from workers.celery.settings import (
        DEFAULT_BROKER_URL,
        ENV_BACKEND,
        ENV_BACKEND_FILE,
        ENV_BROKER,
        ENV_BROKER_CA_FILE,
        ENV_BROKER_FILE,
        ENV_PREFIX,
    )

    return [
        (
            ENV_BROKER,
            f"the stack's broker, a Redis or RabbitMQ URL [default: {DEFAULT_BROKER_URL}]; `conquer up` "
            "prints the one it started",
        ),
        (ENV_BROKER_FILE, "a file holding that URL instead [default: unset]"),
        (ENV_BACKEND, "where results and progress are kept, in Redis [default: the Redis broker URL]"),
        (ENV_BACKEND_FILE, "a file holding that URL instead [default: unset]"),
        (ENV_BROKER_CA_FILE, "amqps:// only: a CA certificate (PEM) to trust [default: the system's CAs]"),
        (ENV_PREFIX, "prefix of the stack's Redis keys [default: none]"),
    ]


def submit_variables() -> list[tuple[str, str]]:
    from workers.celery.settings import DEFAULT_CHUNK_TIME_LIMIT_S, ENV_TIME_LIMIT

    limit = (
        "seconds a chunk may run; a download job whose chunks would wait longer is refused "
        f"[default: {DEFAULT_CHUNK_TIME_LIMIT_S}]"
    )
    return [*stack_variables(), (ENV_TIME_LIMIT, limit)]


@contextmanager
def connected() -> Iterator[Client]:
    """A client for the configured stack, closed afterwards; exit 3 if Redis does not answer."""
    from workers import BrokerUnreachable
    from workers.celery.client import Client

    try:
        client = Client.connect(celery_settings())
    except BrokerUnreachable as error:
        raise Failure(str(error), ExitCode.BROKER_UNREACHABLE) from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def job_errors() -> Iterator[None]:
    """Unknown ids, timeouts and a broker lost midway, as one line and their exit codes."""
    from workers import BrokerUnreachable
    from workers.celery.client import JobTimeout, UnknownJob

    try:
        yield
    except UnknownJob as error:
        raise Failure(str(error), ExitCode.UNKNOWN_JOB) from None
    except JobTimeout as error:
        raise Failure(str(error), ExitCode.TIMEOUT) from None
    except BrokerUnreachable as error:
        raise Failure(str(error), ExitCode.BROKER_UNREACHABLE) from None


def require_a_worker(client: Client, outcome: str, timeout: float = WORKER_ANSWER_S) -> None:
    """Exit 8 unless a worker that consumes the stack's queue answers within `timeout`
    (`workers.celery.consumers`); the line says what did not happen (`outcome`)."""
    if client.consumer(timeout) is None:
        raise no_worker(client.settings, timeout, outcome)


def no_worker(settings: Settings, waited: float, outcome: str = "") -> Failure:
    """Exit 8's one line: the broker asked (password masked), that no worker answered, `outcome`, and
    how to start a stack or point at one."""
    from workers.celery.settings import ENV_BROKER, ENV_PREFIX, mask

    where = mask(settings.broker_url)
    if settings.key_prefix:
        where += f" ({ENV_PREFIX}={settings.key_prefix})"
    if settings.broker_configured:
        hint = (
            f"start workers there, or point {ENV_BROKER} at a stack that has some "
            "(`conquer up` starts one and prints its URL)"
        )
    else:
        where += f" (the default: {ENV_BROKER} is not set)"
        hint = f"start a stack with `conquer up`, then run here the `export {ENV_BROKER}=...` it prints"
    outcome = f"; {outcome}" if outcome else ""
    return Failure(f"no worker answered within {waited:g} s at {where}{outcome}: {hint}", ExitCode.NO_WORKER)


# ------------------------------------------------------------------------------------------ submit

EPILOG_SUBMIT = """\b
Examples:
  conquer submit sum 1e8 --wait                 # a live progress bar, then the verified answer
  conquer submit primes 2e6 --chunks 64         # prints the job id and returns at once
  conquer submit download 200 --chunks 20 --latency 0.05 --json
"""


@command(
    help="Send job KIND over 1..N to the workers; print its id.\n\n"
    f"Nothing is sent unless a worker that consumes the job's queue answers within {WORKER_ANSWER_S:g} s; "
    f"otherwise one line names the broker asked and how to start or point at a stack (exit 8).\n\n"
    f"{kinds_help()}",
    epilog=EPILOG_SUBMIT,
    environment=submit_variables,
)
@job_arguments
@CHUNKS_OPTION
@LATENCY_OPTION
@FAIL_AT_OPTION
@fault_option(in_host=False)
@click.option("--wait", "wait_", is_flag=True, help="Show progress, then the verified answer.")
@seconds_option(
    "--timeout", 0, TIMEOUT_MAX_S, None, f"With --wait: give up after SECONDS [default: {WAIT_DEFAULT_S:g}]."
)
@JSON_OPTION
def submit(
    kind: str,
    n: int,
    chunks: int | None,
    latency: float,
    fail_at: int | None,
    fault: str | None,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
) -> int:
    job = build_job(kind, n, chunks, latency, fail_at, fault)
    if timeout is not None and not wait_:
        raise click.UsageError("--timeout applies only with --wait (without it, submit returns at once)")
    check_chunk_time(job, celery_settings())
    with connected() as client, job_errors():
        require_a_worker(client, "nothing was sent")  # before sending: no job is left queued for nobody
        job_id = client.submit(job)
        if not wait_:
            click.echo(json.dumps({"id": job_id, **_job_fields(job)}) if as_json else job_id)
            return ExitCode.OK
        if sys.stderr.isatty():  # the id to come back with after Ctrl-C; errors and timeouts name it too
            click.echo(f"job {job_id}: {job.describe()}", err=True)
        status = _wait_with_bar(client, job_id, timeout or WAIT_DEFAULT_S, job.chunks, job.describe())
        return _show_outcome(client, status, as_json)


def check_chunk_time(job: Any, settings: Settings) -> None:
    """Refuse a download job whose every chunk would outlive the chunk time limit (its duration is
    known up front: items × latency); CPU-bound chunks are only stopped when they reach the limit."""
    if not job.spec.io_bound:
        return
    longest = -(-job.n // job.chunks) * job.latency
    if longest > settings.chunk_time_limit:
        raise click.UsageError(
            f"each chunk would wait about {longest:g} s, over the chunk time limit of "
            f"{settings.chunk_time_limit} s: use more chunks (or raise CONQUER_CHUNK_TIME_LIMIT)"
        )


def _job_fields(job: Any) -> dict[str, Any]:
    return {"kind": job.kind, "n": job.n, "chunks": job.chunks}


def _wait_with_bar(client: Client, job_id: str, timeout: float, total: int, label: str) -> JobStatus:
    from conquer import render

    with render.bar(total, label, sys.stderr.isatty()) as tick:
        return client.wait(job_id, timeout, on_record=tick)


def _show_outcome(client: Client, status: JobStatus, as_json: bool) -> int:
    """Print a finished job's answer and verification (or why it has none); return the exit code."""
    from tasks.job import check
    from workers.celery.jobstore import CANCELLED, FAILURE, SUCCESS

    if status.state == CANCELLED:
        raise Failure(
            f"job {status.job_id} was cancelled ({status.done}/{status.total} chunks done)",
            ExitCode.CANCELLED,
        )
    if status.state == FAILURE:
        raise Failure(f"job {status.job_id}: {status.error}", ExitCode.JOB_FAILED)
    if status.state != SUCCESS or status.value is None:
        raise Failure(f"job {status.job_id} is {status.state}", ExitCode.TIMEOUT)
    expected = check(status.job)
    verified = status.value == expected
    if as_json:
        click.echo(
            json.dumps(
                {
                    **status.to_dict(),
                    "expected": expected,
                    "check_method": status.job.spec.check_method,
                    "verified": verified,
                    "wall_s": (status.finished or 0) - status.submitted,
                    "chunk_results": client.records(status.job_id),
                },
                indent=2,
            )
        )
    else:
        from conquer import render

        out = render.console()
        out.print(f"[bold]{status.job.describe()}[/] — job {status.job_id}")
        out.print(f"  answer  {status.value}")
        out.print(f"  check   {expected}  ({status.job.spec.check_method})  {render.verdict(verified)}")
        out.print(f"  wall    {(status.finished or 0) - status.submitted:.3f} s (submitted → combined)")
        out.print(f"  workers {_workers_line(status)}")
    if not verified:
        raise wrong_answer(str(status.value), expected, status.job.spec.check_method, status.job_id)
    return ExitCode.OK


def _workers_line(status: JobStatus) -> str:
    return ", ".join(f"{name} ({count})" for name, count in sorted(status.workers.items())) or "—"


# ----------------------------------------------------------------------------------- status/result


@command(
    epilog="\b\nExamples:\n  conquer status 5f0c2a9d1e7b4c36\n  conquer status 5f0c2a9d1e7b4c36 --json\n",
    environment=stack_variables,
)
@JOB_ID_ARGUMENT
@JSON_OPTION
def status(job_id: str, as_json: bool) -> int:
    """Show a job's state, chunks done/failed/total, and workers."""
    with connected() as client, job_errors():
        found = client.status(job_id)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
        return ExitCode.OK
    click.echo(f"job {job_id}  {found.state}  {found.job.describe()}")
    retried = f", {found.retries} retried" if found.retries else ""
    click.echo(f"  chunks    {found.done}/{found.total} done, {found.failed} failed{retried}")
    click.echo(f"  workers   {_workers_line(found)}")
    click.echo(f"  submitted {_ago(found.submitted)}")
    if found.error:
        click.echo(f"  error     {found.error}")
    return ExitCode.OK


def _ago(when: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    return f"{stamp} ({time.time() - when:.0f} s ago)"


@command(
    epilog="\b\nExamples:\n  conquer result 5f0c2a9d1e7b4c36\n"
    "  conquer result 5f0c2a9d1e7b4c36 --timeout 0   # look, don't wait\n",
    environment=stack_variables,
    help="Print a job's verified answer, waiting up to --timeout for it.\n\nA job still queued (no chunk "
    f"started) is waited for only if a worker that consumes its queue answers within {WORKER_ANSWER_S:g} s "
    "(or --timeout, if shorter); otherwise exit 8, the job left as it is.",
)
@JOB_ID_ARGUMENT
@seconds_option("--timeout", 0, TIMEOUT_MAX_S, RESULT_DEFAULT_S, "Wait up to SECONDS for it.")
@JSON_OPTION
def result(job_id: str, timeout: float, as_json: bool) -> int:
    from workers import BrokerUnreachable
    from workers.celery.jobstore import QUEUED

    with connected() as client, job_errors():
        try:
            found = client.status(job_id)
        except BrokerUnreachable:  # lost right after connecting: wait through it (no total yet, no bar)
            found = client.wait(job_id, timeout)
        if found.state == QUEUED and timeout > 0:  # no chunk started yet: is anyone there to run it?
            require_a_worker(client, f"job {job_id} stays queued", min(timeout, WORKER_ANSWER_S))
        if not found.over:
            found = _wait_with_bar(client, job_id, timeout, found.total, found.job.describe())
        return _show_outcome(client, found, as_json)


# ------------------------------------------------------------------------------------------ cancel


@command(epilog="\b\nExample:\n  conquer cancel 5f0c2a9d1e7b4c36\n", environment=stack_variables)
@JOB_ID_ARGUMENT
def cancel(job_id: str) -> int:
    """Cancel a job: revoke its chunks not yet done."""
    with connected() as client, job_errors():
        before, revoked = client.cancel(job_id)
    if before.over:
        click.echo(f"job {job_id} is already over ({before.state}): nothing to cancel")
    else:
        click.echo(f"job {job_id} cancelled: {revoked} of {before.total} chunk(s) revoked")
    return ExitCode.OK


# ----------------------------------------------------------------------------------------- workers


@command(
    epilog="\b\nExamples:\n  conquer workers\n  conquer workers --timeout 3 --json\n",
    environment=stack_variables,
)
@seconds_option("--timeout", 0.1, 60, 1.0, "How long to wait for answers.")
@JSON_OPTION
def workers(timeout: float, as_json: bool) -> int:
    """List the live workers and the chunks they are running.

    Every worker that answers Celery's inspect within --timeout is listed; none answering exits 8,
    saying how to start or point at a stack.
    """
    with connected() as client, job_errors():
        found = client.workers(timeout)
    if as_json:
        click.echo(json.dumps([worker.to_dict() for worker in found], indent=2))
    for worker in [] if as_json else found:
        done = sum(worker.total.values())
        # A threads pool ("thread", as Celery names it) has threads of the worker, no processes.
        size = (
            f"{worker.concurrency} thread(s)"
            if worker.pool == "thread"
            else f"{worker.concurrency} process(es) {worker.processes}"
        )
        click.echo(f"{worker.name}  {worker.pool} pool, {size}, {done} task(s) run")
        for _job, chunk in worker.active:
            click.echo(f"  running  {chunk}")
        if not worker.active:
            click.echo("  idle")
    if not found:
        raise no_worker(client.settings, timeout)
    return ExitCode.OK


COMMANDS = (submit, status, result, cancel, workers)
