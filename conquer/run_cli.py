"""`conquer run` and `conquer compare`: the job on one executor, or on every one side by side.

Usage::

    conquer run sum 1e8 --on processes --ipc shared
    conquer run sum 1e8 --on celery --broker rabbitmq
    conquer compare sum 30_000_000 --repeats 5
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from conquer import interpreters
from conquer.exitcodes import ExitCode
from conquer.options import (
    CHUNKS_OPTION,
    FAIL_AT_OPTION,
    JSON_OPTION,
    LATENCY_OPTION,
    WORKERS_OPTION,
    Failure,
    build_job,
    celery_settings,
    check_brokers,
    command,
    default_workers,
    fault_option,
    job_arguments,
    kinds_help,
    parse_brokers,
    warn,
    wrong_answer,
)
from workers import BROKERS, EXECUTORS, IPCS, START_METHODS


def celery_variables() -> list[tuple[str, str]]:
    """What `--on celery` reads: with no broker, it starts its own stack for the run."""
    from workers.celery.settings import ENV_BROKER

    meaning = (
        "--on celery: the broker of workers already running [default: unset: a private Redis (or with "
        "--broker rabbitmq, a private RabbitMQ node) and workers, started for the run and stopped after it]"
    )
    return [(ENV_BROKER, meaning)]


EPILOG_RUN = """\b
Examples:
  conquer run sum 100_000_000 --on processes
  conquer run sum 1e8 --on processes --ipc shared --start-method spawn -v
  conquer run primes 2e6 --on processes --ipc pipe --chunks 32
  conquer run download 100 --chunks 100 --on threads --workers 32
  conquer run sum 1e6 --fail-at 500000          # a chunk raises: exit 1, its range named
  conquer run sum 1e6 --on celery --fault transient:2@500000   # retried twice, then exact
  conquer run sum 1e8 --on celery --broker rabbitmq   # on a private RabbitMQ node
  conquer run sum 1e8 --on threads --python .venv-ft/bin/python   # under a free-threaded build
"""
RUN_HELP = f"Run job KIND over 1..N once and verify the answer.\n\n{kinds_help()}"


def job_options(function: Any) -> Any:
    """KIND, N and the options run and compare share, in the order their help lists them."""
    for option in (JSON_OPTION, LATENCY_OPTION, WORKERS_OPTION, CHUNKS_OPTION):
        function = option(function)
    return job_arguments(function)


@command(help=RUN_HELP, epilog=EPILOG_RUN, environment=celery_variables)
@job_options
@click.option(
    "--on",
    "executor",
    default="serial",
    show_default=True,
    metavar=f"[{'|'.join(EXECUTORS)}]",
    help="Who runs the chunks (each described in 'conquer --help').",
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
    "--broker",
    type=click.Choice(BROKERS),
    default=None,
    help=f"celery only: the broker its private stack starts [default: {BROKERS[0]}]; rabbitmq starts "
    "a private RabbitMQ node (rabbitmq-server must be installed), Redis keeping the results.",
)
@FAIL_AT_OPTION
@fault_option(in_host=True)
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
    broker: str | None,
    fail_at: int | None,
    fault: str | None,
    verbose: bool,
    python: interpreters.Interpreter | None,
) -> int:
    if python is not None:
        interpreters.hand_over(python)
    import workers as executors
    from conquer import render

    job = build_job(kind, n, chunks, latency, fail_at, fault)
    try:
        plan = executors.plan(
            kind, executor, default_workers() if workers is None else workers, ipc, start_method, broker
        )
    except executors.PlanError as error:
        raise click.UsageError(str(error)) from None
    if plan.executor == "celery":
        # A Celery setting that cannot work is bad input: exit 2, nothing started.
        settings = celery_settings()
        if workers is not None and settings.broker_configured:
            from workers.celery.settings import ENV_BROKER, mask

            raise click.UsageError(
                f"--workers does not apply to --on celery with {ENV_BROKER} set: the workers already "
                f"running at {mask(settings.broker_url)} take the job (see 'conquer workers')"
            )
        check_brokers(settings, [broker] if broker else None)  # exit 2 or 10, nothing started
    with render.bar(job.chunks, job.describe(), sys.stderr.isatty()) as tick:
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
  conquer compare sum 1e7 --executors celery --broker redis,rabbitmq
  conquer compare sum 1e8 --python .venv-ft/bin/python --python .venv/bin/python
"""
COMPARE_HELP = f"Run job KIND over 1..N on every executor and IPC, and compare their times.\n\n{kinds_help()}"


@command(help=COMPARE_HELP, epilog=EPILOG_COMPARE, environment=celery_variables)
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
    help=f"Comma-separated executors to include, of {', '.join(EXECUTORS)} [default: all that apply]; "
    "serial always runs.",
)
@click.option(
    "--start-method",
    type=click.Choice((*START_METHODS, "all")),
    default=None,
    help="Start method for processes, or 'all' [default: the platform's].",
)
@click.option(
    "--broker",
    "brokers",
    default=None,
    metavar="LIST",
    help=f"Comma-separated brokers celery's private stacks start, of {', '.join(BROKERS)} [default: "
    f"{BROKERS[0]}], one row each; rabbitmq starts a private RabbitMQ node.",
)
@fault_option(in_host=True)
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
    brokers: str | None,
    fault: str | None,
    pythons: tuple[interpreters.Interpreter, ...],
) -> int:
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
    asked = parse_brokers(brokers)
    try:
        plans = executor_registry.variants(
            kind,
            default_workers() if workers is None else workers,
            executors=[name.strip() for name in executors.split(",")] if executors else None,
            start_methods=methods,
            brokers=asked,
        )
    except executor_registry.PlanError as error:
        raise click.UsageError(str(error)) from None
    if asked and not any(plan.broker for plan in plans):
        warn("compare", "--broker applies to celery only, which is not among the executors")
    if any(plan.executor == "celery" for plan in plans):
        settings = celery_settings()  # as in `run`: exit 2 before any executor runs
        check_brokers(settings, asked)  # exit 2 or 10, nothing started
        if workers is not None and settings.broker_configured:
            from workers.celery.settings import mask

            warn(
                "compare",
                f"--workers applies to the in-host executors only: celery's are the workers already "
                f"running at {mask(settings.broker_url)}",
            )
    runs = len(plans) * repeats * max(1, len(pythons))
    with render.bar(runs, f"compare {job.describe()}", sys.stderr.isatty()) as tick:
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


COMMANDS = (run, compare)
