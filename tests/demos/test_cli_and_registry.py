"""`conquer demo` lists every lesson and runs one as `python -m demos.NAME` would; every demo module
is registered and documents its exact commands."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

import demos
from conquer.exitcodes import ExitCode
from demos import DEMOS
from tests.conftest import CONQUER, conquer
from tests.demos.terminal import Terminal

HELPERS = {"__init__", "common"}


def test_every_demo_module_is_registered() -> None:
    modules = {path.stem for path in Path(demos.__file__).parent.glob("*.py")} - HELPERS
    assert modules == {demo.module for demo in DEMOS.values()}


@pytest.mark.parametrize("name", DEMOS)
def test_each_demo_opens_with_its_exact_commands(name: str) -> None:
    demo = DEMOS[name]
    assert demo.summary, f"{demo.module} has no summary line"
    usage = demo.docstring.partition("Usage::")[2]
    assert f"conquer demo {name}" in usage
    assert f"python -m demos.{demo.module}" in usage


def test_conquer_demo_lists_every_lesson_with_its_summary() -> None:
    result = conquer("demo")
    assert result.returncode == ExitCode.OK, result.stderr
    for demo in DEMOS.values():
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [demo.name])
        assert demo.summary.replace("``", "")[:40] in line
    assert f"lesson {DEMOS['bank-account'].lesson}" in result.stdout


def test_an_unknown_demo_is_one_line_and_exit_2() -> None:
    result = conquer("demo", "teleport")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip().splitlines() == [
        "conquer demo: unknown demo 'teleport' (run 'conquer demo' to list them) (see 'conquer demo --help')"
    ]


def test_arguments_after_the_name_go_to_the_demo() -> None:
    result = conquer("demo", "bank-account", "--depositors", "7")
    assert result.returncode == ExitCode.OK, result.stderr
    assert "balance 7, expected 7: 0 deposit(s) lost" in result.stdout
    assert "balance 1, expected 7: 6 deposit(s) lost" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--depositors", "1"], "--depositors must be at least 2"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_demo_usage_error_is_its_own_exit_2_in_one_line(arguments: list[str], message: str) -> None:
    result = conquer("demo", "bank-account", *arguments)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_demo_help_passes_through_to_the_demo() -> None:
    result = conquer("demo", "bank-account", "--help")
    assert result.returncode == ExitCode.OK
    assert "usage: conquer demo bank-account" in result.stdout
    assert "python -m demos.bank_account" in result.stdout


def test_the_demo_command_is_in_the_top_level_help() -> None:
    assert "demo" in conquer("--help").stdout
    assert "Examples:" in conquer("demo", "--help").stdout


def test_ctrl_c_stops_a_running_demo_and_its_download_thread() -> None:
    """Ctrl-C reaches conquer and the demo (one process group): the demo cancels its download thread
    and exits; conquer reports the interruption as every command does."""
    screen = Terminal([CONQUER, "demo", "responsive-terminal", "--items", "1000", "--latency", "0.05"])
    try:
        screen.expect("press d to download")
        screen.press("d")
        screen.expect("download started in thread 'download'")
        started = psutil.Process(screen.process.pid).children(recursive=True)
        os.killpg(screen.process.pid, signal.SIGINT)
        assert screen.wait() == ExitCode.INTERRUPTED
        screen.expect(r"download cancelled after \d+ of 1000 items")
        assert screen.output.rstrip().endswith("conquer: interrupted")
        _, alive = psutil.wait_procs(started, timeout=5)
        assert not alive
    finally:
        screen.close()
