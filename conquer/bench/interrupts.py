"""Ctrl-C that a long benchmark never loses, and never hangs on.

CPython runs a SIGINT's KeyboardInterrupt wherever the main thread happens to be — and when that is
an at-fork hook (logging registers one) while a process is being forked, the exception is printed as
"Exception ignored" and forgotten: the run carries on as if nothing had been pressed. The executors
start their workers with SIGINT held (`workers.processes.supervise.ctrl_c_held`), but the bench forks
in other places too (the Celery stack, redis-server, redis-benchmark, the memory series' commands), so
it remembers every SIGINT and raises again at the next check (after every measurement) if the first
one was swallowed.

Should a KeyboardInterrupt still land somewhere that leaves a multiprocessing child running,
`stop_children` ends it, so that the interpreter's exit does not wait for it forever.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from workers.processes.supervise import stop


class Interrupts:
    """While entered (in the main thread), note every SIGINT; `check()` raises if one was noted."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def stop_children() -> None:
    """Terminate (then kill) every multiprocessing child still running."""
    stop(multiprocessing.active_children())
