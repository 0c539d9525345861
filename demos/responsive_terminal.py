"""Exercise 1 in a terminal: a long download in the main thread freezes the interface; moved to a thread,
the spinner keeps turning and keys are answered while it runs.

The interface is the main thread's loop: redraw a spinner and a status line every tenth of a second, and
answer keys — ``d`` download, ``a`` about, ``q`` quit. With ``--frozen`` the download runs right in that
loop, as the exercise's first version does: until it ends the spinner stops and keys wait unanswered.
Without it, the download runs in a worker thread; the loop only reads its progress. ``d`` is refused
while a download runs (the "disabled button"), and ``q`` asks the download to stop between two items.

Usage::

    conquer demo responsive-terminal
    conquer demo responsive-terminal --frozen
    python -m demos.responsive_terminal --items 50 --latency 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Iterator

from demos.common import argument_parser, run, say
from tasks import Job, check
from tasks.kinds import download_range

FRAMES = "|/-\\"
TICK_S = 0.1
CLEAR_LINE = "\r\x1b[K"


class Download:
    """Downloads `job`'s items one by one; its progress is read by the interface thread."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancel = threading.Event()
        # `_lock` guards `done` and `received` together, so a reader sees a count and the bytes of the
        # same items.
        self._lock = threading.Lock()
        self.done = 0
        self.received = 0

    def progress(self) -> tuple[int, int]:
        with self._lock:
            return self.done, self.received

    def run(self) -> None:
        for item in range(1, self.job.n + 1):
            if self.cancel.is_set():
                return
            size = download_range(item, item + 1, self.job.latency)
            with self._lock:
                self.done += 1
                self.received += size


def event(text: str) -> None:
    """An event line: wipe the status line, print the event, and let the next tick redraw the status."""
    sys.stdout.write(CLEAR_LINE)
    say(text)


def status(frame: int, text: str) -> None:
    sys.stdout.write(f"{CLEAR_LINE}{FRAMES[frame % len(FRAMES)]} {text}")
    sys.stdout.flush()


@contextlib.contextmanager
def keys_without_enter() -> Iterator[None]:
    """cbreak mode while the demo runs (each key arrives at once, unechoed), restored on any exit."""
    if not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setcbreak(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def read_key(timeout: float) -> str | None:
    """The next key pressed within `timeout` s, None if none, '' at end of input."""
    ready, _, _ = select.select([0], [], [], timeout)
    return os.read(0, 1).decode(errors="replace") if ready else None


def finish(download: Download) -> None:
    done, received = download.progress()
    if done < download.job.n:
        event(f"download cancelled after {done} of {download.job.n} items")
        return
    mark = "✓ verified" if received == check(download.job) else "✗ MISMATCH"
    event(f"download finished: {done} items, {received} bytes ({mark})")


class Interface:
    """The main thread's loop: a spinner and status line every tick, and an answer to every key."""

    def __init__(self, job: Job, frozen: bool) -> None:
        self.job = job
        self.frozen = frozen
        self.download: Download | None = None
        self.worker: threading.Thread | None = None

    def run(self) -> int:
        where = "in the main thread: the interface freezes" if self.frozen else "in a worker thread"
        event(f"press d to download {self.job.n} items ({where}), a for about, q to quit")
        try:
            frame = 0
            while (key := self.tick(frame)) not in ("q", ""):
                self.answer(key)
                frame += 1
            self.stop_download()
            event("bye")
            return 0
        finally:
            self.stop_download()  # also on Ctrl-C: a non-daemon thread would keep the process alive

    def tick(self, frame: int) -> str | None:
        """Redraw the status line, then wait up to one tick for a key."""
        if self.download is not None and self.worker is not None and not self.worker.is_alive():
            finish(self.download)
            self.download = self.worker = None
        if self.download is not None:
            status(frame, f"downloading {self.download.progress()[0]}/{self.job.n}")
        else:
            status(frame, "idle")
        return read_key(TICK_S)

    def answer(self, key: str | None) -> None:
        if key == "a":
            doing = (
                f"the download is at {self.download.progress()[0]}/{self.job.n}" if self.download else "idle"
            )
            event(f"about: conquer's exercise 1, answered by this thread while {doing}")
        elif key == "d" and self.download is not None:
            event("a download is already running: the download key is disabled until it ends")
        elif key == "d":
            self.download = Download(self.job)
            if self.frozen:
                event("download started in the main thread: nothing else happens until it ends")
                self.download.run()
                finish(self.download)
                self.download = None
            else:
                self.worker = threading.Thread(target=self.download.run, name="download")
                self.worker.start()
                event(f"download started in thread {self.worker.name!r}")

    def stop_download(self) -> None:
        if self.download is not None and self.worker is not None:
            self.download.cancel.set()  # the download stops between two items
            self.worker.join()
            finish(self.download)
            self.download = self.worker = None


def add_download_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options both versions of exercise 1 take."""
    parser.add_argument(
        "--frozen", action="store_true", help="download in the main thread (the first version)"
    )
    parser.add_argument("--items", type=int, default=30, help="items to download")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each item takes")
    return parser


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    arguments = add_download_options(parser).parse_args()
    job = Job("download", arguments.items, 1, latency=arguments.latency)
    with keys_without_enter():
        return Interface(job, arguments.frozen).run()


if __name__ == "__main__":
    run(main)
