"""The `conquer` command.

Every error reaches the user as one line on stderr with a distinct exit status (see `conquer.exitcodes`),
never a traceback; set CONQUER_DEBUG=1 to see the traceback of an unexpected error. Only click is
imported at start-up: each command imports what it needs when it runs, so `conquer --help` is fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from conquer import exitcodes, run_cli, stack_cli
from conquer.bench.command import bench
from conquer.demo_cli import demo
from conquer.exitcodes import ExitCode
from conquer.options import Failure
from conquer.up_cli import up
from tasks import KINDS
from workers import EXECUTORS


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
                ExitCode.INTERNAL_ERROR,
            )
        sys.exit(status if isinstance(status, int) else 0)


def fail(message: str, code: int) -> None:
    click.echo(" ".join(message.split()), err=True)
    sys.exit(code)


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


for command in (*run_cli.COMMANDS, demo, *stack_cli.COMMANDS, up, bench):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="conquer")
