"""Exercise 1 as the note's Tk window: a "Download" button whose long download, run in the main thread,
freezes the window — and, run in a worker thread, leaves it responsive, with the button disabled until
the download ends; "About" answers at any time the window is alive.

Tk, like most GUI toolkits, redraws and answers clicks only from its event loop (``mainloop``) in the
main thread. A callback that runs for seconds keeps the loop from running: no redraw, no click answered
— they queue up, and even disabling the button does not help, since the queued clicks arrive once it is
enabled again. With the download in a worker thread, the callback returns at once; the loop polls the
download's progress every tenth of a second (``after``), because Tk widgets may be touched only from the
main thread. A tick counter shows whether the loop ran during the download. The note's buttons say 下载
and 关于; its "About" opened a message box, here it writes into the window and the terminal. Needs a
display (an X server, or Xvfb).

Usage::

    conquer demo responsive-tk
    conquer demo responsive-tk --frozen
    python -m demos.responsive_tk --items 50 --latency 0.1
"""

from __future__ import annotations

import signal
import threading
import tkinter as tk
from types import FrameType

from conquer.exitcodes import ExitCode
from demos.common import argument_parser, run, say
from demos.responsive_terminal import Download, add_download_options
from tasks import Job, check

TICK_MS = 100


class Window:
    def __init__(self, root: tk.Tk, job: Job, frozen: bool) -> None:
        self.root, self.job, self.frozen = root, job, frozen
        root.title("conquer — exercise 1" + (" (frozen)" if frozen else ""))
        self.download_button = tk.Button(root, text="Download (下载)", width=16, command=self.on_download)
        self.about_button = tk.Button(root, text="About (关于)", width=16, command=self.on_about)
        self.status = tk.Label(root, text="idle", width=48, anchor="w")
        self.clock = tk.Label(root, text="ticks: 0", anchor="w")
        for widget in (self.download_button, self.about_button, self.status, self.clock):
            widget.pack(padx=12, pady=4, fill="x")
        self.ticks = 0
        self.download: Download | None = None
        self.worker: threading.Thread | None = None
        self.ticks_at_start = 0
        self.closed = False
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.after(TICK_MS, self.tick)

    def tick(self) -> None:
        """Runs every TICK_MS while the event loop runs: the window's heartbeat, and the progress poll."""
        self.ticks += 1
        self.clock.config(text=f"ticks: {self.ticks}")
        if self.download is not None and self.worker is not None:
            done, _ = self.download.progress()
            self.status.config(text=f"downloading {done}/{self.job.n} in thread {self.worker.name!r}")
            if not self.worker.is_alive():
                self.finished()
        self.root.after(TICK_MS, self.tick)

    def on_download(self) -> None:
        self.download_button.config(state=tk.DISABLED)  # enabled again when the download ends
        self.download = Download(self.job)
        self.ticks_at_start = self.ticks
        if self.frozen:
            say("download started in the main thread: the window freezes until it ends")
            self.status.config(text="downloading in the main thread...")
            self.download.run()  # the event loop waits for this: no redraw, no click, no tick
            self.finished()
        else:
            self.worker = threading.Thread(target=self.download.run, name="download")
            self.worker.start()
            say(f"download started in thread {self.worker.name!r}")

    def finished(self) -> None:
        assert self.download is not None
        done, received = self.download.progress()
        if self.worker is not None:
            self.worker.join()
        mark = "✓ verified" if done == self.job.n and received == check(self.job) else "incomplete"
        ticks = self.ticks - self.ticks_at_start
        outcome = f"{done} items, {received} bytes ({mark})"
        say(f"download finished: {outcome}; the window ticked {ticks} times meanwhile")
        self.status.config(text=f"downloaded {done} items, {received} bytes")
        self.download, self.worker = None, None
        self.download_button.config(state=tk.NORMAL)

    def on_about(self) -> None:
        doing = f"the download is at {self.download.progress()[0]}/{self.job.n}" if self.download else "idle"
        state = self.download_button.cget("state")
        say(f"about: answered by this thread while {doing}; the download button is {state}")
        self.status.config(text=f"conquer's exercise 1 — answered while {doing}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.download is not None and self.worker is not None:
            self.download.cancel.set()  # stops between two items
            self.worker.join()
        say("bye")
        self.root.destroy()

    def show_buttons(self) -> None:
        """Print where the buttons are on the screen (what a test clicks, and what you'd see)."""
        self.root.update()
        centres = []
        for name, button in (("download", self.download_button), ("about", self.about_button)):
            x = button.winfo_rootx() + button.winfo_width() // 2
            y = button.winfo_rooty() + button.winfo_height() // 2
            centres.append(f"{name} button at {x},{y}")
        say(f"window ready: {'; '.join(centres)}")


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    arguments = add_download_options(parser).parse_args()
    job = Job("download", arguments.items, 1, latency=arguments.latency)
    try:
        root = tk.Tk()
    except tk.TclError as error:
        parser.exit(
            ExitCode.CANNOT_RUN_HERE,
            f"no display to open the window on ({error}); try: xvfb-run python -m {__spec__.name}\n",
        )
    window = Window(root, job, arguments.frozen)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C or SIGTERM: close from the event loop, not from inside whichever callback was running.
        root.after_idle(window.close)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    window.show_buttons()
    root.mainloop()
    return 0


if __name__ == "__main__":
    run(main)
