"""Every exit status `conquer` uses, by name, each for one outcome. Scripts can rely on these numbers
(README.md lists them, and a test checks that it lists exactly these)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: A chunk raised or a worker died; the message names the chunk's range or the worker.
    JOB_FAILED = 1
    #: Bad input (unknown kind, N not an integer, chunks > N, ...): one line on stderr, nothing ran.
    USAGE = 2
    #: The broker (Redis) could not be reached; the message names the URL with its password masked.
    BROKER_UNREACHABLE = 3
    #: The job did not finish by the deadline; it may still be running (the job id is printed).
    TIMEOUT = 4
    #: No job with that id is known to the result backend (never submitted, or expired).
    UNKNOWN_JOB = 5
    #: The job was cancelled before it finished.
    CANCELLED = 6
    #: The job finished but its answer does not match the independent check.
    WRONG_ANSWER = 7
    #: No worker answered through the broker (`conquer workers`): a job sent there would not run.
    NO_WORKER = 8
    #: `conquer up` could not start its stack, or a process of it died (the message names which).
    STACK_FAILED = 9
    #: This machine lacks what a demo or an option needs (root and nftables for `hosts`, a display for
    #: `responsive-tk`, rabbitmq-server for `--broker rabbitmq`): one line says what, nothing ran.
    CANNOT_RUN_HERE = 10
    #: A bug in conquer: an error it did not expect (CONQUER_DEBUG=1 shows the traceback). 70 is
    #: EX_SOFTWARE of BSD's sysexits(3), "an internal software error".
    INTERNAL_ERROR = 70
    #: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130


def table() -> str:
    """The codes as the help text shows them."""
    return "\n".join(f"  {code.value:>3}  {code.name.lower().replace('_', ' ')}" for code in ExitCode)
