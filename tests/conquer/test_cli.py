"""The `conquer` command through its installed entry point: answers, JSON, errors and Ctrl-C."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click
import psutil
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from conquer import machine
from conquer.cli import cli
from conquer.exitcodes import ExitCode
from conquer.numbers import parse_count
from tasks.kinds import KINDS
from tests.conftest import CONQUER, Stack, conquer, ctrl_c, fresh_python, one_line, wait_until
from tests.conquer.rows import check_row_facts
from workers import EXECUTORS
from workers.celery.settings import DEFAULT_BROKER_URL, Settings


def test_run_prints_the_answer_and_its_verification() -> None:
    result = conquer("run", "sum", "100_000", "--on", "processes", "--ipc", "pipe", "-v")
    assert result.returncode == ExitCode.OK, result.stderr
    assert f"answer  {100_000 * 100_001 // 2}" in result.stdout
    assert "n(n+1)/2" in result.stdout
    assert "✓ verified" in result.stdout
    assert "who ran each chunk" in result.stdout


@pytest.mark.parametrize("written", ["100000", "100_000", "1e5", "1E5", "1.0e5"])
def test_n_may_be_written_plainly_with_underscores_or_in_scientific_notation(written: str) -> None:
    result = conquer("run", "sum", written, "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["n"] == 100_000


def test_run_json_is_a_complete_report() -> None:
    result = conquer("run", "primes", "20000", "--chunks", "5", "--on", "thread-pool", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is True
    assert report["value"] == report["expected"]
    assert report["check_method"] == "segmented sieve of Eratosthenes"
    assert [chunk["index"] for chunk in report["chunk_results"]] == list(range(5))
    assert {"host", "pid", "thread", "started", "ended"} <= report["chunk_results"][0].keys()


def test_a_failing_chunk_exits_1_naming_its_range() -> None:
    result = conquer("run", "sum", "1000", "--chunks", "4", "--on", "processes", "--fail-at", "600")
    assert result.returncode == ExitCode.JOB_FAILED
    assert result.stderr.strip() == (
        "conquer: chunk 2 [501, 751) failed: InjectedFault: injected fault at item 600"
    )


BAD_INPUTS = [
    (["run", "sum", "0"], "n must be at least 1"),
    (["run", "sum", "-5"], "Invalid value for 'N': -5 is negative"),
    (["run", "sum", "-1e3", "--json"], "Invalid value for 'N': -1e3 is negative"),
    (["run", "-5", "10"], "Invalid value for 'KIND'"),
    (["run", "sum", "--", "-5"], "Invalid value for 'N': -5 is negative"),
    (["run", "sum", "10", "-k", "-3"], "'--chunks' / '-k': -3 is negative"),
    (["run", "sum", "10", "--workers", "-2"], "'--workers' / '-w': -2 is negative"),
    (["run", "sum", "10", "--fail-at", "-1"], "'--fail-at': -1 is negative"),
    (["run", "sum", "-5", "-vk"], "Option '-k' requires an argument"),
    (["compare", "sum", "-5"], "Invalid value for 'N': -5 is negative"),
    (["run", "sum", "1.5"], "not a whole number"),
    (["run", "sum", "1e-3"], "not a whole number"),
    (["run", "sum", "ten"], "is not an integer"),
    (["run", "sum", "nan"], "is not an integer"),
    (["run", "sum", "5e9"], "n must be at most 4_000_000_000"),
    (["run", "sum", "1e999999999"], "far too large"),
    (["run", "sum", "10", "--chunks", "0"], "chunks must be at least 1"),
    (["run", "sum", "10", "--chunks", "11"], "cannot exceed n"),
    (["run", "sum", "10", "--workers", "0"], "workers must be an integer >= 1"),
    (["run", "sum", "10", "--workers", "100000"], "workers must be at most"),
    (["run", "cube", "10"], "'cube' is not one of"),
    (["run", "sum", "10", "--on", "gpu"], "unknown executor 'gpu'"),
    (["run", "sum", "10", "--ipc", "carrier-pigeon"], "'carrier-pigeon' is not one of"),
    (["run", "sum", "10", "--start-method", "teleport"], "'teleport' is not one of"),
    (["run", "sum", "10", "--on", "threads", "--ipc", "pipe"], "--ipc applies to the processes"),
    (["run", "sum", "10", "--on", "serial", "--start-method", "spawn"], "--start-method applies"),
    (["run", "sum", "10", "--on", "asyncio"], "asyncio runs only download"),
    (["run", "download", "10", "--latency", "-1"], "not in the range"),
    (["run", "sum", "10", "--fail-at", "11"], "fail-at must be an item"),
    (["run"], "Missing argument 'KIND'"),
    (["run", "sum"], "Missing argument 'N'"),
    (["compare", "sum", "10", "--repeats", "0"], "not in the range"),
    (["compare", "sum", "10", "--executors", "serial,gpu"], "unknown executor 'gpu'"),
    (["teleport"], "No such command"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), BAD_INPUTS, ids=lambda a: " ".join(a) if isinstance(a, list) else ""
)
def test_bad_input_gets_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    result = conquer(*arguments)
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    assert message in one_line(result.stderr)


@given(st.text(max_size=20))
@settings(max_examples=300)
def test_parse_count_accepts_exactly_the_integers(text: str) -> None:
    try:
        value = parse_count(text)
    except ValueError:
        return
    assert str(value) == text.strip().replace("_", "") or "e" in text.lower() or "." in text


@given(st.integers(-(10**20), 10**20))
def test_parse_count_round_trips_integers(number: int) -> None:
    assert parse_count(str(number)) == number
    assert parse_count(f"{number:_}") == number


def test_compare_runs_every_in_host_executor_and_reports_speedups_as_json() -> None:
    result = conquer(
        "compare",
        "download",
        "12",
        "--chunks",
        "12",
        "--workers",
        "4",
        "--latency",
        "0.01",
        "--repeats",
        "1",
        "--executors",
        # In-host only, as the name says: the default adds celery, which needs a Redis server.
        "threads,thread-pool,processes,asyncio,managers",
        "--json",
    )
    assert result.returncode == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    rows = summary["results"]
    assert rows[0]["executor"] == "serial"
    assert rows[0]["speedup"] == pytest.approx(1.0)
    assert {row["executor"] for row in rows} >= {
        "serial",
        "threads",
        "thread-pool",
        "processes",
        "asyncio",
    }
    assert {row["ipc"] for row in rows if row["executor"] == "processes"} == {
        "queue",
        "pipe",
        "pool",
        "shared",
        "manager",
    }
    assert all(row["verified"] and row["error"] is None for row in rows)
    assert summary["machine"]["cores"] >= 1


def proc_stat() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the machine so far, read here independently of conquer."""
    clock = machine.cpu_clock()
    return (clock.busy_s, clock.steal_s) if clock else None


def test_compare_json_carries_what_each_run_used_and_what_disturbed_it() -> None:
    before = proc_stat()
    result = conquer("compare", "sum", "2e6", "--executors", "processes", "--repeats", "3", "--json")
    after = proc_stat()
    assert result.returncode == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    check_row_facts(summary)
    runs = [run for row in summary["results"] for run in row["runs"]]
    if before is not None and after is not None:
        # The runs' counters are differences of /proc/stat within the command's own: never more.
        rounding = sum(run["resolution_s"] for run in runs)
        assert sum(run["steal_s"] for run in runs) <= after[1] - before[1] + rounding
        assert sum(run["cpu_s"] + run["other_cpu_s"] for run in runs) <= after[0] - before[0] + rounding
    serial, *processes = summary["results"]
    # The workers' CPU is the run's: sum 2·10^6 took 0.055 s of CPU on serial here and 0.073–0.099 s
    # on each IPC's tree (load 4–5 on 2 cores); the parent alone spends under 0.02 s.
    assert all(row["cpu_s_median"] >= serial["cpu_s_median"] / 2 for row in processes)


def test_compare_counts_the_embedded_celery_stacks_cpu() -> None:
    result = conquer(
        "compare", "sum", "1e7", "--executors", "celery", "--repeats", "1", "--json", timeout=120
    )
    assert result.returncode == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    check_row_facts(summary)
    serial, celery = summary["results"]
    # The chunks run in the stack's pool processes: without them the client's share of sum 10^7 (a
    # chord of 16 tasks) is a few tens of ms against serial's ~0.3 s.
    assert celery["cpu_s_note"] is None
    assert celery["cpu_s_median"] >= serial["cpu_s_median"] / 2


def test_compare_says_cpu_is_not_measured_through_an_external_broker(celery_stack: Stack) -> None:
    result = conquer(
        "compare", "sum", "1e5", "--executors", "celery", "--repeats", "1", "--json", env=celery_stack.env
    )
    assert result.returncode == ExitCode.OK, result.stderr
    celery = json.loads(result.stdout)["results"][1]
    assert "external broker" in celery["cpu_s_note"]
    assert celery["cpu_s_median"] is None
    assert all(run["cpu_s"] is None and run["other_cpu_s"] is None for run in celery["runs"])


def test_compare_prints_one_table() -> None:
    result = conquer("compare", "sum", "20000", "--repeats", "3", "--executors", "threads")
    assert result.returncode == ExitCode.OK, result.stderr
    assert "median of 3 run(s)" in result.stdout
    assert "speedup" in result.stdout
    assert result.stdout.count("✓ verified") == 2  # serial (always) and threads


def test_help_shows_examples_and_exit_codes() -> None:
    top = conquer("--help")
    assert "Exit status" in top.stdout
    for code in ExitCode:
        assert re.search(rf"^ +{code.value} +{code.name.lower().replace('_', ' ')}$", top.stdout, re.M), code
    assert "Examples:" in conquer("run", "--help").stdout


def help_of(command: str) -> str:
    result = CliRunner().invoke(cli, [command, "--help"], prog_name="conquer", terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["run", "compare", "submit"])
def test_job_commands_list_the_kinds_and_say_how_counts_are_written(command: str) -> None:
    text = help_of(command)
    for kind in KINDS.values():
        assert re.search(rf"^ +{kind.name} +{re.escape(kind.summary)}$", text, re.M), kind.name
    assert "100_000_000 or 1e8" in text
    assert re.search(r"--chunks COUNT ", text)
    assert re.search(r"--latency SECONDS ", text)
    assert " TEXT" not in text


def test_run_and_compare_list_the_executors() -> None:
    assert f"--on [{'|'.join(EXECUTORS)}]" in help_of("run")
    assert ", ".join(EXECUTORS) in " ".join(help_of("compare").split())
    assert re.search(r"--workers COUNT ", help_of("run"))


def test_submit_help_speaks_of_celery_only() -> None:
    text = " ".join(help_of("submit").split())
    assert "--fault SPEC" in text
    assert "in-host" not in text
    assert "--timeout SECONDS With --wait" in text
    assert "in-host executors don't" in " ".join(help_of("run").split())


@pytest.mark.parametrize("command", ["submit", "status", "result", "cancel", "workers", "up"])
def test_every_stack_command_names_the_variables_it_reads_and_their_defaults(command: str) -> None:
    lines = help_of(command).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Environment"))
    block = " ".join(" ".join(lines[start:]).split())
    expected = "an embedded Redis" if command == "up" else DEFAULT_BROKER_URL
    assert re.search(rf"CELERY_BROKER_URL [^\[]*\[default: [^\]]*{re.escape(expected)}", block), block
    names = re.findall(r"^ {4}([A-Z_]+) ", "\n".join(lines[start:]), re.M)
    assert names, block
    for name in names:  # each variable named has its default
        assert re.search(rf"{name} [^\[]*\[default: [^\]]+\]", block), name
    assert set(names) <= set(Settings().to_env()) | {"CELERY_BROKER_URL_FILE", "CELERY_RESULT_BACKEND_FILE"}


def test_the_readme_lists_every_exit_status_and_no_other() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.partition("## Exit status")[2].partition("\n## ")[0]
    listed = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert listed == [code.value for code in ExitCode]


def test_an_unexpected_error_is_an_internal_error_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 70 is a bug in conquer: made here by a command that fails as no command should."""

    @click.command("broken")
    def broken() -> None:
        raise KeyError("a bug")

    monkeypatch.delenv("CONQUER_DEBUG", raising=False)
    monkeypatch.setitem(cli.commands, "broken", broken)
    result = CliRunner().invoke(cli, ["broken"], prog_name="conquer")
    assert result.exit_code == ExitCode.INTERNAL_ERROR
    assert one_line(result.stderr) == (
        "conquer: unexpected error: KeyError: 'a bug' (set CONQUER_DEBUG=1 for the traceback)"
    )


def test_help_imports_nothing_heavy() -> None:
    """`conquer --help` must stay fast: no Rich, no Celery, no asyncio at start-up — nor the bench suite,
    matplotlib or psutil, although `conquer bench` is registered."""
    heavy = ("rich", "celery", "asyncio", "redis", "matplotlib", "psutil", "conquer.bench.suite")
    probe = f"import sys; from conquer import cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    assert fresh_python(probe).strip() == "[]"


@pytest.mark.parametrize(
    ("executor", "children"),
    [
        (["processes"], 2),
        # Spawned workers take ~0.1 s to boot: the Ctrl-C lands while they do, and must still give
        # one line, not a KeyboardInterrupt traceback from every half-started child.
        (["processes", "--ipc", "pipe", "--start-method", "spawn"], 2),
        (["managers"], 3),  # the queue server and two workers
    ],
    ids=["processes", "processes-spawn-booting", "managers"],
)
def test_ctrl_c_stops_every_worker_and_exits_130(executor: list[str], children: int) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group; do the same."""
    process = subprocess.Popen(
        [
            CONQUER,
            "run",
            "download",
            "400",
            "--chunks",
            "40",
            "--latency",
            "0.05",
            "--on",
            *executor,
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    parent = psutil.Process(process.pid)
    wait_until(lambda: len(parent.children()) >= children, 20, "the workers never started")
    started = parent.children(recursive=True)
    _, stderr = ctrl_c(process, timeout=20)
    assert process.returncode == ExitCode.INTERRUPTED
    assert stderr.strip() == "conquer: interrupted"
    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, f"left behind: {alive}"
