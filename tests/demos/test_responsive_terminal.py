"""Exercise 1 in a terminal, driven through a real pty: a download in a worker thread leaves the spinner
turning and keys answered; the same download in the main thread freezes both until it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.demos.terminal import Terminal

MODULE = "demos.responsive_terminal"


@pytest.fixture
def terminal() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for each in opened:
        each.close()


def start(opened: list[Terminal], *arguments: str) -> Terminal:
    screen = Terminal.module(MODULE, *arguments)
    opened.append(screen)
    screen.expect(r"press d to download")
    return screen


def test_with_a_worker_thread_the_spinner_turns_and_keys_are_answered_during_the_download(
    terminal: list[Terminal],
) -> None:
    screen = start(terminal, "--items", "200", "--latency", "0.05")
    screen.press("d")
    started = screen.expect(r"download started in thread 'download'")
    # The status line keeps being redrawn while the download runs: the interface is alive.
    screen.expect(r"[|/\\-] downloading [1-9]\d*/200")
    screen.expect(r"[|/\\-] downloading ([2-9]|\d\d+)/200")
    screen.press("d")
    screen.expect(r"already running: the download key is disabled")
    screen.press("a")
    about = screen.expect(r"\[pid \d+ MainThread\] about: .* while the download is at \d+/200")
    screen.press("q")
    screen.expect(r"download cancelled after \d+ of 200 items")
    assert screen.wait() == 0
    assert "download finished" not in screen.output[started:about], "the about key was answered only after"


def test_in_the_main_thread_the_download_freezes_the_interface_until_it_ends(
    terminal: list[Terminal],
) -> None:
    screen = start(terminal, "--frozen", "--items", "10", "--latency", "0.05")
    screen.press("d")
    started = screen.expect(r"download started in the main thread")
    screen.press("a")  # pressed while the main thread is busy downloading
    finished = screen.expect(r"download finished: 10 items, \d+ bytes \(✓ verified\)")
    about = screen.expect(r"about: .* while idle")
    assert started < finished < about, "the key was answered only once the download had ended"
    frozen_part = screen.output[started:finished]
    assert "downloading" not in frozen_part, "no status line was drawn during the download"
    screen.press("q")
    assert screen.wait() == 0


def test_a_finished_threaded_download_is_verified(terminal: list[Terminal]) -> None:
    screen = start(terminal, "--items", "5", "--latency", "0.01")
    screen.press("d")
    screen.expect(r"download finished: 5 items, \d+ bytes \(✓ verified\)")
    screen.press("q")
    assert screen.wait() == 0
