"""Run a command that is killed when the process that started it dies, however it dies.

The embedded stack (`workers.celery.localstack`) starts Redis and Celery workers through this launcher. Its
own clean-up stops them in order on success, error and Ctrl-C; this covers the rest — a SIGKILLed
`conquer` — on Linux, where the kernel sends the child SIGKILL when its parent exits
(`PR_SET_PDEATHSIG`; a worker's pool processes follow, Celery sets the same for them). SIGKILL, not
SIGTERM: a worker's warm shutdown would wait for a Redis that is going away at the same moment, and
nobody is left to report to. Chunks it had taken are late-acknowledged, so another worker of a shared
broker runs them again. Elsewhere than Linux it simply runs the command.

Usage::

    python -m workers.celery.launcher PARENT_PID COMMAND [ARGS...]
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m workers.celery.launcher PARENT_PID COMMAND [ARGS...]")
    parent, command = int(argv[0]), argv[1:]
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
        # The parent may have died before prctl ran: then no signal will ever come.
        if os.getppid() != parent:
            sys.exit("the parent exited before the command started")
    # exec keeps the pid (so the caller's Popen is the command's) and the death signal setting.
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
