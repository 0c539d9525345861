"""`conquer demo`: list the chapter's lessons, or run one.

A demo runs as its own interpreter, exactly as ``python -m demos.NAME`` would: its module is then
``__main__``, which is what the start-method lessons need to show (a spawned child re-imports the main
module), and a demo's processes and exit status are its own. Arguments after NAME go to the demo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import click

EPILOG = """\b
Examples:
  conquer demo                          # list them
  conquer demo bank-account             # 100 threads deposit 1 each, without and with a Lock
  conquer demo start-methods --processes 8
  conquer demo divide-and-conquer --help
"""

#: How long a demo gets to exit after Ctrl-C reached it (it got the SIGINT too) before it is killed.
INTERRUPT_GRACE_S = 10.0


def list_demos() -> None:
    """Each lesson of the chapter, then its demos: name and summary, shortened to the terminal's width."""
    from demos import DEMOS

    width = max(len(name) for name in DEMOS)
    room = max(40, shutil.get_terminal_size((120, 24)).columns - width - 5)
    lesson = None
    for entry in DEMOS.values():
        if entry.lesson != lesson:
            lesson = entry.lesson
            click.echo(f"lesson {lesson}")
        summary = textwrap.shorten(entry.summary.replace("``", ""), room, placeholder=" …")
        click.echo(f"  {entry.name:<{width}}  {summary}")
    click.echo("\nRun one with 'conquer demo NAME' (arguments after NAME go to the demo).")


@click.command(
    epilog=EPILOG,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("name", required=False, metavar="[NAME]")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED, metavar="[ARGS]...")
def demo(name: str | None, arguments: tuple[str, ...]) -> int:
    """Run one lesson of the processes-and-threads chapter, or list them all."""
    from demos import DEMOS

    if name is None:
        list_demos()
        return 0
    chosen = DEMOS.get(name)
    if chosen is None:
        raise click.UsageError(f"unknown demo {name!r} (run 'conquer demo' to list them)")
    process = subprocess.Popen([sys.executable, "-m", chosen.qualified, *arguments])
    try:
        status = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C went to the whole foreground process group, the demo included: let it finish its
        # own clean-up, then report the interruption as every conquer command does.
        try:
            process.wait(INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    # A demo killed by signal N reports -N; shells report that as 128 + N.
    return 128 - status if status < 0 else status
