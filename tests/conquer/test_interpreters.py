"""`conquer compare --python` (and `run --python`) through the installed command: rows run under other
interpreters, each in a runner of its own, in the same interleaved rounds; each row says which build
ran it and whether the GIL was off; a bad --python is refused before anything runs; a runner that
dies fails its own rows only and leaves nothing running; Ctrl-C stops every runner."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import psutil
import pytest

from conquer import machine, render
from conquer.exitcodes import ExitCode
from conquer.interpreters import without_option
from tests.conftest import CONQUER, conquer, ctrl_c, one_line, wait_until
from tests.conquer.rows import check_row_facts

ROOT = Path(__file__).resolve().parents[2]
#: The free-threaded build's venv (`make freethreaded`; CI builds it) and the GIL build's (`make install`).
FREE_THREADED = ROOT / ".venv-ft" / "bin" / "python"
WITH_GIL = ROOT / ".venv" / "bin" / "python"

needs_both_builds = pytest.mark.skipif(
    not (FREE_THREADED.exists() and WITH_GIL.exists()),
    reason="no .venv-ft/bin/python (or .venv/bin/python): `make freethreaded` makes the free-threaded one",
)


def this_python() -> dict[str, Any]:
    """The interpreter object a row run by this very interpreter must carry."""
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "free_threaded": machine.free_threaded_build(),
        "gil_enabled": machine.gil_enabled(),
    }


def compare_json(*arguments: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = conquer("compare", *arguments, "--json", timeout=300, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_the_same_interpreter_given_twice_runs_every_row_under_each_in_the_same_rounds() -> None:
    summary = compare_json(
        "sum", "2e5", "--executors", "threads,thread-pool", "--repeats", "2",
        "--python", sys.executable, "--python", sys.executable,
    )  # fmt: skip
    rows = summary["results"]
    # Case by case, each case's interpreters side by side: the order the rounds ran them in.
    assert [(row["executor"], row["interpreter_index"]) for row in rows] == [
        (executor, index) for executor in ("serial", "threads", "thread-pool") for index in (0, 1)
    ]
    assert all(row["interpreter"] == this_python() for row in rows)
    assert summary["interpreters"] == [this_python(), this_python()]
    assert all(row["verified"] for row in rows)
    check_row_facts(summary)
    # A GIL build runs these tests: its first serial is the one both interpreters are compared to. A
    # free-threaded one (CI's second run): there is no GIL build among them, so no such speedup.
    gil_serial = rows[0] if not machine.free_threaded_build() else None
    assert summary["gil_serial_interpreter"] == (this_python() if gil_serial else None)
    for row in rows:
        expected = gil_serial["wall_s_median"] / row["wall_s_median"] if gil_serial else None
        assert row["speedup_vs_gil_serial"] == pytest.approx(expected)


@needs_both_builds
def test_a_table_of_both_builds_says_which_ran_each_row_and_that_the_gil_was_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = compare_json(
        "sum", "1e6", "--executors", "threads", "--repeats", "2",
        "--python", str(FREE_THREADED), "--python", str(WITH_GIL),
    )  # fmt: skip
    check_row_facts(summary)
    free, gil = summary["interpreters"]
    assert free["free_threaded"] is True
    assert free["gil_enabled"] is False
    assert gil["free_threaded"] is False
    assert gil["gil_enabled"] is True
    assert summary["gil_serial_interpreter"] == gil
    rows = summary["results"]
    for row in rows:
        assert row["interpreter"] == summary["interpreters"][row["interpreter_index"]]
        assert all(run["gil_enabled"] is row["interpreter"]["gil_enabled"] for run in row["runs"])
    gil_serial = next(row for row in rows if row["interpreter"] == gil and row["executor"] == "serial")
    for row in rows:
        assert row["speedup_vs_gil_serial"] == pytest.approx(
            gil_serial["wall_s_median"] / row["wall_s_median"]
        )
    render.comparison(summary)
    table = capsys.readouterr().out
    assert f"{free['version']}t GIL off" in table
    assert "vs GIL serial" in table
    assert "GIL ON" not in table


@needs_both_builds
def test_a_free_threaded_build_whose_gil_was_on_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """PYTHON_GIL=1 turns the free-threaded build's GIL on, as an extension module imported without
    declaring itself free-threading safe does: its rows must not pass for free-threaded figures."""
    summary = compare_json(
        "sum", "1e5", "--executors", "threads", "--repeats", "1",
        "--python", str(FREE_THREADED), "--python", str(WITH_GIL),
        env={"PYTHON_GIL": "1"},
    )  # fmt: skip
    free = summary["interpreters"][0]
    assert free["free_threaded"] is True
    assert free["gil_enabled"] is True
    assert all(row["interpreter"]["gil_enabled"] for row in summary["results"])
    render.comparison(summary)
    table = capsys.readouterr().out
    assert f"{free['version']}t GIL ON" in table
    assert "the GIL was ON during its runs" in table


@needs_both_builds
def test_run_hands_the_command_over_to_the_interpreter_named() -> None:
    result = conquer("run", "sum", "1e5", "--on", "threads", "--python", str(FREE_THREADED))
    assert result.returncode == ExitCode.OK, result.stderr
    assert "✓ verified" in result.stdout
    assert "(free-threaded, GIL off)" in result.stdout
    assert str(FREE_THREADED) in result.stdout


def test_run_hands_over_its_command_line_without_the_python_option() -> None:
    given = ["run", "sum", "10", "--python", "x", "--on=threads", "--python=y", "--", "--python"]
    assert without_option(given) == ["run", "sum", "10", "--on=threads", "--", "--python"]


# ------------------------------------------------------------------------------ bad input


OLD_PYTHON = """#!/bin/sh
# What a Python 3.10 answers: this machine has none older than 3.11, so the real one, told it is 3.10.
exec {python} -c 'import sys; sys.version_info = (3, 10, 12, "final", 0); exec(sys.argv[1])' "$2"
"""


def bad_pythons(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Each kind of bad --python: (the path, what the line must say to do)."""
    plain = tmp_path / "plain"
    plain.write_text("print('hi')\n")
    plain.chmod(0o644)
    script = tmp_path / "not-python"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    old = tmp_path / "python3.10"
    old.write_text(OLD_PYTHON.format(python=sys.executable))
    old.chmod(0o755)
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)  # a Python >= 3.11 without conquer
    give = "give a Python >= 3.11 with conquer installed"
    return {
        "missing": (str(tmp_path / "nowhere" / "python"), give),
        "directory": (str(tmp_path), give),
        "not executable": (str(plain), give),
        "not Python": (str(script), give),
        "too old": (str(old), "conquer needs 3.11 or later"),
        "no conquer": (str(bare / "bin" / "python"), "-m pip install -e"),
    }


BAD_KINDS = ["missing", "directory", "not executable", "not Python", "too old", "no conquer"]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("command", ["compare", "run"])
def test_a_bad_python_gets_one_line_naming_it_and_exit_2(tmp_path: Path, kind: str, command: str) -> None:
    path, advice = bad_pythons(tmp_path)[kind]
    # Given after a good one, for compare: still nothing runs.
    good = ["--python", sys.executable] if command == "compare" else []
    result = conquer(command, "sum", "1e5", *good, "--python", path)
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert path in line
    assert advice in line


# ------------------------------------------------------------------------------ runners that end


def runners(process: subprocess.Popen[str]) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(process.pid).children():
        try:
            if "conquer.runner" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def start_compare(*arguments: str) -> subprocess.Popen[str]:
    """`compare sum 2e7` on processes (every IPC, forked workers) under this interpreter twice: each
    runner, while it runs a processes row, has worker processes of its own (0.2–2 s a run here: long
    enough to be caught); in the manager row, also the Manager's server process."""
    return subprocess.Popen(
        [
            CONQUER, "compare", "sum", "2e7", "--executors", "processes", "--start-method", "fork",
            "--repeats", "3", "--python", sys.executable, "--python", sys.executable, *arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip


def busy_runner(process: subprocess.Popen[str], children: int = 1) -> psutil.Process:
    """A runner caught running a processes row with at least `children` processes of its own."""
    found: list[psutil.Process] = []

    def caught() -> bool:
        found[:] = [runner for runner in runners(process) if len(runner.children()) >= children]
        return bool(found)

    wait_until(caught, 120, f"no runner ever had {children} worker processes", interval=0.01)
    return found[0]


def test_a_runner_that_dies_fails_its_own_rows_and_leaves_nothing_running() -> None:
    process = start_compare("--json")
    try:
        # In its manager row (the Manager's server and two workers): the server would never exit by
        # itself once orphaned, unlike a worker that finishes its chunks.
        victim = busy_runner(process, children=3)
        workers = victim.children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == ExitCode.JOB_FAILED, stderr
    rows = json.loads(stdout)["results"]
    failed = {row["interpreter_index"] for row in rows if row["error"]}
    assert len(failed) == 1
    for row in rows:
        if row["interpreter_index"] in failed:
            assert row["error"] == f"the runner under {sys.executable} died (killed by SIGKILL)"
        else:
            assert row["verified"]
            assert len(row["runs"]) == 3
    # Its orphaned workers were killed with its group, not left to the subreaper.
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, f"left behind: {alive}"


def test_ctrl_c_stops_a_run_in_a_runner_and_exits_130() -> None:
    """Ctrl-C reaches only `conquer`'s process group; a runner is in a group of its own and must get
    it from `conquer`: its serial run of sum 4·10^9 (over a minute here) stops, or `conquer` would wait
    for it. Caught in that run by its CPU time: once the second runner has started, the first one is
    idle until it runs its serial row."""
    process = subprocess.Popen(
        [
            CONQUER, "compare", "sum", "4e9", "--executors", "threads", "--repeats", "1",
            "--python", sys.executable, "--python", sys.executable,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_until(lambda: len(runners(process)) == 2, 120, "the second runner never started")
    first = min(runners(process), key=lambda runner: runner.create_time())
    idle = sum(first.cpu_times()[:2])
    # 0.3 s of CPU: a few hundred times a tick, and far beyond what an idle runner spends.
    wait_until(lambda: sum(first.cpu_times()[:2]) - idle > 0.3, 120, "the first runner never ran its row")
    started = psutil.Process(process.pid).children(recursive=True)
    _, stderr = ctrl_c(process, timeout=30)
    assert process.returncode == ExitCode.INTERRUPTED
    assert stderr.strip() == "conquer: interrupted"
    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, f"left behind: {alive}"
