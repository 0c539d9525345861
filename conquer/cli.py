"""The `conquer` command.

Every error reaches the user as one line on stderr with a distinct exit status (see `conquer.exitcodes`),
never a traceback; set CONQUER_DEBUG=1 to see the traceback of an unexpected error. Only click is
imported at start-up: each command imports what it needs when it runs, so `conquer --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from conquer import exitcodes, interpreters, stack_cli
from conquer.bench.command import bench
from conquer.demo_cli import demo
from conquer.exitcodes import ExitCode
from conquer.numbers import FiniteFloatRange
from tasks import KINDS, faults
from workers import EXECUTORS, IPCS, START_METHODS

DEFAULT_CHUNKS = 16


class Failure(Exception):
    """An expected failure: printed as one line, exits with its ExitCode."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


class ConquerGroup(click.Group):
    """Turns every way a command can fail into one line on stderr and a documented exit status."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except click.UsageError as error:
            where = f"conquer {error.ctx.command.name}" if error.ctx and error.ctx.parent else "conquer"
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            fail(f"{where}: {error.format_message()}{hint}", ExitCode.USAGE)
        except click.ClickException as error:
            fail(f"conquer: {error.format_message()}", error.exit_code)
        except Failure as error:
            fail(f"conquer: {error}", error.code)
        except (KeyboardInterrupt, click.Abort):
            fail("conquer: interrupted", ExitCode.INTERRUPTED)
        except Exception as error:
            if os.environ.get("CONQUER_DEBUG"):
                raise
            fail(
                f"conquer: unexpected error: {type(error).__name__}: {error} "
                "(set CONQUER_DEBUG=1 for the traceback)",
                ExitCode.JOB_FAILED,
            )
        sys.exit(status if isinstance(status, int) else 0)


def wrong_answer(answer: str, expected: int, check_method: str, job_id: str | None = None) -> Failure:
    """Exit 7's one line: the answer, and what the independent check says instead."""
    job = f"job {job_id}: " if job_id else ""
    return Failure(
        f"{job}wrong answer: {answer} does not match the independent check, {expected} ({check_method})",
        ExitCode.WRONG_ANSWER,
    )


def fail(message: str, code: int) -> None:
    click.echo(" ".join(message.split()), err=True)
    sys.exit(code)


def count(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: a count written as 100000000, 100_000_000 or 1e8."""
    if value is None:
        return None
    from conquer.numbers import parse_count

    try:
        return parse_count(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def fault_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
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


EPILOG_RUN = """\b
Examples:
  conquer run sum 100_000_000 --on processes
  conquer run sum 1e8 --on processes --ipc shared --start-method spawn -v
  conquer run primes 2e6 --on processes --ipc pipe --chunks 32
  conquer run download 100 --chunks 100 --on threads --workers 32
  conquer run sum 1e6 --fail-at 500000          # a chunk raises: exit 1, its range named
  conquer run sum 1e6 --on celery --fault transient:2@500000   # retried twice, then exact
  conquer run sum 1e8 --on threads --python .venv-ft/bin/python   # under a free-threaded build
"""


def overview() -> str:
    jobs = "\n".join(f"  {kind.name:12} {kind.summary}" for kind in KINDS.values())
    executors = "\n".join(f"  {spec.name:12} {spec.summary}" for spec in EXECUTORS.values())
    return (
        "One divide-and-conquer job, run every way Python can run it.\n\n"
        f"\b\nJobs (KIND):\n{jobs}\n\n\b\nExecutors (--on):\n{executors}"
    )


@click.group(
    cls=ConquerGroup,
    help=overview(),
    epilog="\b\nExit status:\n" + exitcodes.table(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="conquer", message="conquer %(version)s")
def cli() -> None:
    pass


def job_options(function: Any) -> Any:
    options = [
        click.option(
            "--chunks",
            "-k",
            callback=count,
            default=None,
            help=f"Ranges to cut 1..N into [default: {DEFAULT_CHUNKS}, or N if smaller].",
        ),
        click.option(
            "--workers",
            "-w",
            callback=count,
            default=None,
            help="Threads/processes/coroutines to run them on [default: the cores here].",
        ),
        click.option(
            "--latency",
            type=FiniteFloatRange(0, 10),
            default=0.1,
            show_default=True,
            help="download only: seconds each item waits.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout."),
    ]
    for option in reversed(options):
        function = option(function)
    function = click.argument("n", callback=count, metavar="N")(function)
    return click.argument("kind", type=click.Choice(tuple(KINDS)), metavar="KIND")(function)


def build_job(
    kind: str,
    n: int,
    chunks: int | None,
    latency: float,
    fail_at: int | None = None,
    fault: str | None = None,
) -> Any:
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


@cli.command(epilog=EPILOG_RUN)
@job_options
@click.option(
    "--on",
    "executor",
    default="serial",
    show_default=True,
    metavar="EXECUTOR",
    help="Who runs the chunks (listed in 'conquer --help').",
)
@click.option(
    "--ipc",
    type=click.Choice(IPCS),
    default=None,
    help="processes only: how ranges and results travel [default: queue].",
)
@click.option(
    "--start-method",
    type=click.Choice(START_METHODS),
    default=None,
    help="processes only [default: the platform's].",
)
@click.option(
    "--fail-at",
    callback=count,
    default=None,
    metavar="ITEM",
    help="Fault injection: the chunk holding ITEM raises (the same as --fault fail@ITEM).",
)
@click.option("--fault", callback=fault_option, default=None, metavar="SPEC", help=faults.HELP)
@click.option("-v", "--verbose", is_flag=True, help="Also show who ran each chunk, and when.")
@click.option("--python", callback=interpreters.one, metavar="PYTHON", help=interpreters.HELP_RUN)
def run(
    kind: str,
    n: int,
    chunks: int | None,
    workers: int | None,
    latency: float,
    as_json: bool,
    executor: str,
    ipc: str | None,
    start_method: str | None,
    fail_at: int | None,
    fault: str | None,
    verbose: bool,
    python: interpreters.Interpreter | None,
) -> int:
    """Run job KIND over 1..N once and verify the answer."""
    if python is not None:
        interpreters.hand_over(python)
    import workers as executors
    from conquer import render

    job = build_job(kind, n, chunks, latency, fail_at, fault)
    try:
        plan = executors.plan(
            kind, executor, default_workers() if workers is None else workers, ipc, start_method
        )
    except executors.PlanError as error:
        raise click.UsageError(str(error)) from None
    if plan.executor == "celery":
        stack_cli.stack_settings()  # a Celery setting that cannot work is bad input: exit 2, nothing started
    with render.progress_bar(job.chunks, job.describe(), sys.stderr.isatty()) as tick:
        try:
            report = executors.run(job, plan, progress=tick)
        except executors.BrokerUnreachable as error:
            raise Failure(str(error), ExitCode.BROKER_UNREACHABLE) from None
        except executors.ExecutorError as error:
            raise Failure(str(error), ExitCode.JOB_FAILED) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render.report(report, verbose)
    if not report.verified:
        raise wrong_answer(str(report.value), report.expected, report.check_method)
    return ExitCode.OK


EPILOG_COMPARE = """\b
Examples:
  conquer compare sum 30_000_000
  conquer compare sum 1e7 --start-method all --repeats 5
  conquer compare download 100 --chunks 100 --workers 32
  conquer compare primes 1e6 --executors processes,threads --json
  conquer compare sum 1e8 --python .venv-ft/bin/python --python .venv/bin/python
"""


@cli.command(epilog=EPILOG_COMPARE)
@job_options
@click.option(
    "--repeats",
    "-r",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Runs per executor, in interleaved rounds; the table shows their median and range.",
)
@click.option(
    "--executors",
    default=None,
    metavar="LIST",
    help="Comma-separated executors to include [default: all that apply]; serial always runs.",
)
@click.option(
    "--start-method",
    type=click.Choice((*START_METHODS, "all")),
    default=None,
    help="Start method for processes, or 'all' [default: the platform's].",
)
@click.option("--fault", callback=fault_option, default=None, metavar="SPEC", help=faults.HELP)
@click.option(
    "--python",
    "pythons",
    multiple=True,
    callback=interpreters.option,
    metavar="PYTHON",
    help=interpreters.HELP,
)
def compare(
    kind: str,
    n: int,
    chunks: int | None,
    workers: int | None,
    latency: float,
    as_json: bool,
    repeats: int,
    executors: str | None,
    start_method: str | None,
    fault: str | None,
    pythons: tuple[interpreters.Interpreter, ...],
) -> int:
    """Run job KIND over 1..N on every executor and IPC, and compare their times."""
    import workers as executor_registry
    from conquer import compare as comparing
    from conquer import render
    from tasks import check

    job = build_job(kind, n, chunks, latency, fault=fault)
    if workers is not None and not 1 <= workers <= executor_registry.WORKERS_MAX:
        # Checked here too: when only serial runs, no plan ever looks at --workers.
        raise click.UsageError(
            f"workers must be between 1 and {executor_registry.WORKERS_MAX}, got {workers}"
        )
    methods = list(START_METHODS) if start_method == "all" else ([start_method] if start_method else None)
    try:
        plans = executor_registry.variants(
            kind,
            default_workers() if workers is None else workers,
            executors=[name.strip() for name in executors.split(",")] if executors else None,
            start_methods=methods,
        )
    except executor_registry.PlanError as error:
        raise click.UsageError(str(error)) from None
    if any(plan.executor == "celery" for plan in plans):
        stack_cli.stack_settings()  # as in `run`: exit 2 before any executor runs
    runs = len(plans) * repeats * max(1, len(pythons))
    with render.progress_bar(runs, f"compare {job.describe()}", sys.stderr.isatty()) as tick:
        rows = comparing.compare(job, plans, repeats, on_run=tick, pythons=pythons)
    summary = comparing.to_dict(job, rows, repeats)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render.comparison(summary)
    results = summary["results"]
    if any(row["error"] for row in results):
        return ExitCode.JOB_FAILED
    wrong: dict[int, list[str]] = {}
    for row, name in zip(rows, comparing.row_labels(rows), strict=True):
        if row.wrong_answer is not None:
            wrong.setdefault(row.wrong_answer, []).append(name)
    if wrong:
        answers = ", ".join(f"{value} from {', '.join(labels)}" for value, labels in wrong.items())
        raise wrong_answer(answers, check(job), job.spec.check_method)
    return ExitCode.OK


cli.add_command(demo)
for command in stack_cli.COMMANDS:
    cli.add_command(command)
cli.add_command(bench)


def main() -> None:
    cli(prog_name="conquer")
