"""`--broker rabbitmq`: the celery executor's private stack on a private RabbitMQ node (Redis keeping the
results), through the real `conquer` command — the exact answer, and nothing left running afterwards
(no beam.smp, epmd, erl_child_setup, celery worker or Redis), also after Ctrl-C while the node boots
and after a SIGKILLed `conquer`; the choice refused in one line where it cannot be.

Each `conquer` here runs with TMPDIR in the test's own directory: its stack's directory, and so the
node's HOME and the environment of every process it starts, are there — which is how the leftover
scan knows them (epmd daemonizes, so "descendants of conquer" would miss exactly the one that matters).
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import suppress
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

import workers
from conquer import compare
from conquer.cli import cli
from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import CONQUER, ctrl_c, one_line, skip_without_redis_server, wait_until
from tests.rabbitmq_server import skip_without_rabbitmq
from workers.celery import brokers, localstack
from workers.celery.brokers import rabbitmq
from workers.celery.settings import settings


def started_in(tmpdir: Path) -> list[psutil.Process]:
    """Every live process (zombies are gone, only owed a status) whose environment has TMPDIR at
    `tmpdir`: all that a `conquer` run there started, however they were reparented since."""
    found = []
    for process in psutil.process_iter(["name"]):
        with suppress(psutil.Error):
            if process.environ().get("TMPDIR") == str(tmpdir) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def names(processes: list[psutil.Process]) -> list[str]:
    found = []
    for process in processes:
        with suppress(psutil.Error):
            found.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
    return found


def conquer_in(tmpdir: Path, *args: str) -> subprocess.Popen[str]:
    """`conquer ARGS` with no broker configured, TMPDIR at `tmpdir`, in its own session."""
    tmpdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "CONQUER_"))}
    return subprocess.Popen(
        [CONQUER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "TMPDIR": str(tmpdir)},
        start_new_session=True,
    )


def has(tmpdir: Path, name: str) -> bool:
    return any(process.info["name"] == name for process in started_in(tmpdir))


@pytest.fixture
def node_here() -> None:
    skip_without_rabbitmq()
    skip_without_redis_server()


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("node_here")
def test_a_run_on_the_embedded_rabbitmq_is_exact_and_leaves_nothing_running(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    job = Job("sum", 1_000_003, 16)
    process = conquer_in(tmpdir, "run", "sum", str(job.n), "--on", "celery", "--broker", "rabbitmq", "--json")
    seen: dict[int, str] = {}

    def everything_up() -> bool:
        for found in started_in(tmpdir):
            with suppress(psutil.Error):
                seen[found.pid] = found.name()
        return {"beam.smp", "epmd", "erl_child_setup"} <= set(seen.values()) or process.poll() is not None

    wait_until(everything_up, 120, "the private RabbitMQ node never started")
    stdout, stderr = process.communicate(timeout=150)
    assert process.returncode == ExitCode.OK, stderr
    report = json.loads(stdout)
    assert report["value"] == check(job)
    assert report["verified"]
    assert report["details"]["broker_name"] == "RabbitMQ"
    assert "private RabbitMQ node" in report["details"]["stack"]
    # No visibility timeout to stay under: the limit is RabbitMQ's, not the embedded Redis's.
    assert report["details"]["chunk_time_limit_s"] == rabbitmq.CHUNK_TIME_LIMIT_S
    assert {"beam.smp", "epmd", "erl_child_setup"} <= set(seen.values()), seen
    assert any("celery" in name or "python" in name for name in seen.values()), seen
    assert started_in(tmpdir) == [], f"left running: {names(started_in(tmpdir))}"


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("node_here")
def test_ctrl_c_while_the_node_boots_stops_it_and_exits_130(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    process = conquer_in(tmpdir, "run", "sum", "1000", "--on", "celery", "--broker", "rabbitmq")
    wait_until(lambda: has(tmpdir, "beam.smp") or process.poll() is not None, 60, "no node started")
    assert process.poll() is None, "the run ended before the node booted"
    _, stderr = ctrl_c(process, timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert started_in(tmpdir) == [], f"left running: {names(started_in(tmpdir))}"


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("node_here")
def test_a_sigkilled_conquer_takes_its_rabbitmq_node_and_epmd_with_it(tmp_path: Path) -> None:
    """Nobody is left to stop anything: the workers die by their launcher's death signal, the node by
    its parent's (`rabbitmq_node.NODE_PARENT`), which also ends the epmd that left the node's session."""
    tmpdir = tmp_path / "tmp"
    # 400 chunks of 50 ms on 2 workers: 10 s, far longer than the wait for the workers to take it.
    args = ("run", "download", "400", "--chunks", "400", "--latency", "0.05", "--workers", "2")
    process = conquer_in(tmpdir, *args, "--on", "celery", "--broker", "rabbitmq")

    def working() -> bool:
        found = started_in(tmpdir)
        pool = [p for p in found if "celery" in " ".join(p.cmdline()) and p.children()]
        return (bool(pool) and has(tmpdir, "epmd")) or process.poll() is not None

    wait_until(working, 120, "the stack on RabbitMQ never started")
    assert process.poll() is None, "the run ended before it could be killed"
    process.kill()
    process.communicate(timeout=30)
    wait_until(lambda: not started_in(tmpdir), 45, "the stack outlived the SIGKILLed conquer")


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("node_here")
def test_compare_puts_a_row_per_broker_side_by_side_and_leaves_nothing(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    process = conquer_in(
        tmpdir, "compare", "sum", "1e5", "--executors", "celery", "--repeats", "2", "--json",
        "--broker", "redis,rabbitmq",
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=150)
    assert process.returncode == ExitCode.OK, stderr
    rows = [row for row in json.loads(stdout)["results"] if row["executor"] == "celery"]
    assert [(row["broker"], row["deployment"]["broker_name"]) for row in rows] == [
        ("redis", "Redis"),
        ("rabbitmq", "RabbitMQ"),
    ]
    assert all(row["verified"] and len(row["wall_s"]) == 2 for row in rows), rows
    assert started_in(tmpdir) == [], f"left running: {names(started_in(tmpdir))}"


# ------------------------------------------------------------------------- refused in one line


def test_broker_rabbitmq_with_a_redis_broker_configured_exits_2_in_one_line() -> None:
    result = subprocess.run(
        [CONQUER, "run", "sum", "1000", "--on", "celery", "--broker", "rabbitmq"],
        capture_output=True,
        text=True,
        timeout=60,
        # Never contacted: refused before anything connects.
        env={**os.environ, "CELERY_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"},
        check=False,
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    line = one_line(result.stderr)
    assert "--broker rabbitmq" in line
    assert "CELERY_BROKER_URL" in line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "args",
    [
        ("run", "sum", "1000", "--on", "celery", "--broker", "rabbitmq"),
        ("compare", "sum", "1000", "--executors", "celery", "--broker", "redis,rabbitmq"),
    ],
)
def test_broker_rabbitmq_without_rabbitmq_server_exits_10_in_one_line(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rabbitmq, "DEBIAN_SCRIPTS", tmp_path)  # no Debian scripts here
    monkeypatch.setenv("PATH", str(tmp_path))  # and no rabbitmq-server on PATH
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings.cache_clear()  # read once per process: read again without the variables
    try:
        result = CliRunner().invoke(cli, list(args))
    finally:
        settings.cache_clear()
    assert result.exit_code == ExitCode.CANNOT_RUN_HERE, result.output
    assert "install rabbitmq-server" in one_line(result.stderr)
    assert result.stdout == ""


# ----------------------------------------------------------------------------------- plans


def test_the_default_broker_is_the_embedded_one_and_each_can_be_started() -> None:
    assert workers.EXECUTORS["celery"].brokers == workers.BROKERS
    assert workers.BROKERS[0] == brokers.EMBEDDED.NAME.lower() == localstack.DEFAULT_BROKER
    assert set(workers.BROKERS) == set(localstack.EMBEDDABLE)


def test_a_broker_is_named_only_when_asked_and_only_for_celery() -> None:
    plans = workers.variants("sum", 2)
    assert [plan.broker for plan in plans if plan.executor == "celery"] == [None]  # no node unless asked
    asked = [plan for plan in workers.variants("sum", 2, brokers=workers.BROKERS) if plan.broker]
    assert [compare.label(plan) for plan in asked] == [f"celery/{name}" for name in workers.BROKERS]
    assert compare.label(workers.plan("sum", "celery", 2)) == "celery"
    with pytest.raises(workers.PlanError, match="--broker applies to the celery executor only"):
        workers.plan("sum", "threads", 2, broker="rabbitmq")
    with pytest.raises(workers.PlanError, match="unknown broker 'kafka'"):
        workers.variants("sum", 2, brokers=["kafka"])
