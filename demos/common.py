"""What every demo shares: lines that say which process and thread printed them, and a `main` wrapper.

`say` writes a whole line in ONE write() call and flushes it. On a pipe, a write of at most PIPE_BUF
bytes (4096 on Linux) is atomic, so the lines of several processes may come out in any order but never
cut into each other — see `demos.print_lock` for output that is written in pieces and needs a lock.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from typing import NoReturn

from tasks import Job, check

#: The longest a demo waits for its worker processes.
JOIN_TIMEOUT_S = 60.0


def who() -> str:
    """This process and thread, as every demo line starts: ``pid 4242 MainThread``."""
    return f"pid {os.getpid()} {threading.current_thread().name}"


def say(*parts: object) -> None:
    """Print one line tagged with who printed it."""
    line = " ".join(str(part) for part in parts)
    sys.stdout.write(f"[{who()}] {line}\n")
    sys.stdout.flush()


def verify(job: Job, value: int) -> bool:
    """Say whether `value` is `job`'s answer, checked independently of the chunks; return whether it is."""
    expected = check(job)
    mark = "✓ verified" if value == expected else "✗ MISMATCH"
    say(f"answer {value}, check {expected} ({job.spec.check_method}): {mark}")
    return value == expected


@contextmanager
def running(processes: Sequence[BaseProcess], timeout: float = JOIN_TIMEOUT_S) -> Iterator[None]:
    """Start `processes` for the body of a ``with``; after it, wait for all of them (at most `timeout` s)
    and insist each exited 0. Whatever happens, none is left running."""
    for process in processes:
        process.start()
    try:
        yield
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode != 0:
                state = "is still running" if process.exitcode is None else f"exited with {process.exitcode}"
                raise SystemExit(f"{process.name} (pid {process.pid}) {state}")
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()


def start_and_join(processes: Sequence[BaseProcess], timeout: float = JOIN_TIMEOUT_S) -> None:
    """Start `processes` and wait for them all to exit 0 (see `running`)."""
    with running(processes, timeout):
        pass


def heading(title: str) -> None:
    sys.stdout.write(f"\n== {title}\n")
    sys.stdout.flush()


def run(main: Callable[[], int | None]) -> None:
    """Run a demo's `main` and exit with its status; Ctrl-C ends it with 130 and one line, no traceback."""
    try:
        status = main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(status or 0)


class OneLineErrors(argparse.ArgumentParser):
    """Bad arguments get one line on stderr and exit 2, as everywhere in `conquer` (argparse would
    print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def argument_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for demo `module` (its ``__spec__.name``), described by its docstring."""
    name = module.rpartition(".")[2].replace("_", "-")
    return OneLineErrors(
        prog=f"conquer demo {name}",
        description=(doc or "").split("\n\n")[0],
        epilog=f"The same as: python -m {module} [options]",
    )


def add_job_options(parser: argparse.ArgumentParser, *, workers: int = 3, n: int = 3_000_000) -> None:
    """--workers and --n, for the demos that add up 1..N with one chunk per worker process."""
    from conquer.numbers import parse_count

    parser.add_argument(
        "--workers", type=parse_count, default=workers, help="worker processes, one chunk each"
    )
    parser.add_argument("--n", type=parse_count, default=n, help="add up 1..N (10_000_000 and 1e7 work)")


def sum_job(arguments: argparse.Namespace) -> Job:
    return Job("sum", arguments.n, arguments.workers)
