"""Daemon threads: ``daemon`` must be set before ``start()`` (RuntimeError after), it is inherited from
the creating thread, and daemon threads die with the main thread while the interpreter waits for others.

When the main thread returns, Python joins every non-daemon thread and then exits; daemon threads are
simply stopped — mid-loop, without running their ``finally`` blocks. The last two parts run a child
interpreter (this module with ``--child``) so that its exit can be watched from outside.

Usage::

    conquer demo daemon-threads
    python -m demos.daemon_threads
    python -m demos.daemon_threads --child daemon       # just the child whose main thread returns
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from demos.common import argument_parser, heading, run, say

#: The longest any wait in this demo may take.
DEADLINE_S = 30.0
#: Pace of the ticking thread (its work, not synchronisation: nothing waits for a tick to happen).
TICK_S = 0.05
NON_DAEMON_TICKS = 4


def set_daemon_after_start() -> None:
    heading("daemon must be set before start()")
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(DEADLINE_S,), name="already-running")
    thread.start()
    try:
        thread.daemon = True
    except RuntimeError as error:
        say(f"thread.daemon = True after start() raised RuntimeError: {error}")
    finally:
        release.set()
        thread.join()
    thread = threading.Thread(target=lambda: None, name="not-started-yet")
    thread.daemon = True
    say(f"before start() it is fine: {thread.name}.daemon = {thread.daemon}")


def inherited() -> None:
    heading("daemon is inherited from the creating thread")
    seen: dict[str, bool] = {}

    def record() -> None:
        seen[threading.current_thread().name] = threading.current_thread().daemon

    def create_grandchild() -> None:
        record()
        grandchild = threading.Thread(target=record, name="made-by-a-daemon")
        grandchild.start()
        grandchild.join()

    say(f"the main thread: daemon = {threading.current_thread().daemon}")
    for thread in (
        threading.Thread(target=record, name="made-by-main"),
        threading.Thread(target=create_grandchild, name="a-daemon", daemon=True),
    ):
        thread.start()
        thread.join()
    for name, daemon in seen.items():
        say(f"{name}: daemon = {daemon}")


def child(kind: str) -> None:
    """The child interpreter: start a ticking thread, wait for its first tick, return from main."""
    first_tick = threading.Event()

    def tick() -> None:
        try:
            count = 0
            while kind == "daemon" or count < NON_DAEMON_TICKS:
                count += 1
                say(f"tick {count}")
                first_tick.set()
                time.sleep(TICK_S)
            say("finished its work")
        finally:
            say("its finally block ran")

    thread = threading.Thread(target=tick, name=f"{kind}-ticker", daemon=kind == "daemon")
    thread.start()
    if not first_tick.wait(DEADLINE_S):
        raise SystemExit("the ticker never ticked")
    say("the main thread returns now")


def watch_child(kind: str) -> None:
    forever = "ticks forever" if kind == "daemon" else f"ticks {NON_DAEMON_TICKS} times"
    heading(f"a {kind} thread that {forever}, when the main thread returns")
    began = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", __spec__.name, "--child", kind],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    for line in finished.stdout.splitlines():
        print(f"    {line}")
    say(f"the child exited with status {finished.returncode} after {time.perf_counter() - began:.2f} s")
    finished_work = "finished its work" in finished.stdout
    ran_finally = "its finally block ran" in finished.stdout
    say(
        f"the {kind} thread {'finished its work' if finished_work else 'was stopped mid-loop'}"
        f" and its finally block {'ran' if ran_finally else 'never ran'}"
    )


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--child", choices=("daemon", "non-daemon"), help="be the child that is watched")
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child)
        return 0
    set_daemon_after_start()
    inherited()
    watch_child("daemon")
    watch_child("non-daemon")
    return 0


if __name__ == "__main__":
    run(main)
