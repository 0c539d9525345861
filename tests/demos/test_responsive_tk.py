"""Exercise 1 as the note's Tk window, clicked for real under Xvfb with xdotool: with the download in a
worker thread the window keeps ticking and answers "About" while the Download button is disabled; in
the main thread the window freezes, and queued clicks run only after the download."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import CONQUER
from tests.demos.terminal import Terminal

MODULE = "demos.responsive_tk"


def missing() -> str | None:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return "this Python has no tkinter"
    tools = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if tools:
        return f"{' and '.join(tools)} not installed (Debian: apt-get install xvfb xdotool)"
    return None


@pytest.fixture
def display() -> Iterator[str]:
    """A private virtual X display; Xvfb picks a free display number and tells it on a pipe."""
    reason = missing()
    if reason:
        pytest.skip(f"the Tk window needs a display to be clicked: {reason}")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=[write_end],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 20)
        if not ready:
            pytest.fail("Xvfb did not report its display within 20 s")
        number = os.read(read_end, 64).decode().strip()
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(10)


@pytest.fixture
def window(display: str) -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for each in opened:
        if each.process.poll() is None:
            each.process.terminate()
        each.wait()
        each.close()


class Clicker:
    def __init__(self, screen: Terminal, display: str) -> None:
        self.display = display
        ready = screen.expect(r"window ready: .*about button at \d+,\d+")
        where = screen.output[:ready]
        self.buttons = {name: (x, y) for name, x, y in re.findall(r"(\w+) button at (\d+),(\d+)", where)}

    def click(self, button: str) -> None:
        x, y = self.buttons[button]
        subprocess.run(
            ["xdotool", "mousemove", x, y, "click", "1"],
            env={**os.environ, "DISPLAY": self.display},
            check=True,
            timeout=20,
        )


def open_window(opened: list[Terminal], display: str, *arguments: str) -> tuple[Terminal, Clicker]:
    screen = Terminal.module(MODULE, *arguments, env={"DISPLAY": display})
    opened.append(screen)
    return screen, Clicker(screen, display)


def test_with_a_worker_thread_the_window_stays_responsive_and_the_button_disabled(
    window: list[Terminal], display: str
) -> None:
    screen, clicker = open_window(window, display, "--items", "30", "--latency", "0.05")
    clicker.click("download")
    started = screen.expect(r"download started in thread 'download'")
    clicker.click("download")  # disabled: nothing happens
    clicker.click("about")
    about = screen.expect(r"about: .* while the download is at \d+/30; the download button is disabled")
    finished = screen.expect(
        r"download finished: 30 items, \d+ bytes \(✓ verified\); the window ticked (\d+)"
    )
    ticks = int(re.findall(r"the window ticked (\d+) times", screen.output)[-1])
    assert ticks > 0, "the event loop ran during the download"
    assert started < about < finished, screen.output
    assert screen.output.count("download started") == 1, "a click on the disabled button started nothing"
    screen.process.terminate()
    screen.expect(r"bye")
    assert screen.wait() == 0


def test_in_the_main_thread_the_window_freezes_and_clicks_wait_for_the_download(
    window: list[Terminal], display: str
) -> None:
    screen, clicker = open_window(window, display, "--frozen", "--items", "10", "--latency", "0.05")
    clicker.click("download")
    started = screen.expect(r"download started in the main thread")
    clicker.click("about")  # queued: the event loop is stuck in the download
    about = screen.expect(r"about: .* while idle; the download button is normal")
    finished = screen.output.index("download finished", started)
    assert finished < about, "About was answered only after the download"
    assert "the window ticked 0 times meanwhile" in screen.output[finished:about]
    begun = time.monotonic()
    screen.process.terminate()
    screen.expect(r"bye")
    assert screen.wait() == 0
    assert time.monotonic() - begun < 20


def test_without_a_display_it_says_so_in_one_line_and_exits_10() -> None:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        pytest.skip("this Python has no tkinter")
    from conquer.exitcodes import ExitCode

    env = {name: value for name, value in os.environ.items() if name not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [CONQUER, "demo", "responsive-tk"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (ExitCode.CANNOT_RUN_HERE, "")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("no display to open the window on ("), result.stderr
