"""The `managers` executor: workers that join a BaseManager's queues by address and authkey keep every
guarantee of the in-host executors (the exactness matrix and the killed-worker check live in
test_executors.py), notice a dead server instead of hanging, refuse a wrong key, and leave nothing
running on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys

import psutil
import pytest

import workers
from conquer.exitcodes import ExitCode
from tasks import Chunk, Job, check, combine, split
from tests.conftest import conquer
from workers import ChunkResult, WorkerLost
from workers.managers import AUTHKEY_ENV, serving
from workers.processes.supervise import get_context


def test_a_dead_server_fails_the_run_instead_of_hanging() -> None:
    """With one worker, the only other child of this process is the manager's server: kill it."""
    job = Job("download", 64, 16, latency=0.01)
    killed: list[int] = []

    def kill_the_server(result: ChunkResult) -> None:
        if not killed:
            others = [child for child in psutil.Process().children() if child.pid != result.pid]
            server = next(
                child
                for child in others
                if any(c.status == psutil.CONN_LISTEN for c in child.net_connections(kind="tcp"))
            )
            killed.append(server.pid)
            server.kill()

    with pytest.raises(WorkerLost, match=r"manager server at 127\.0\.0\.1:\d+ stopped answering"):
        workers.run(job, workers.plan("download", "managers", 1), progress=kill_the_server)
    assert killed


def run_worker_command(address: tuple[str, int], key: str) -> subprocess.CompletedProcess[str]:
    """The command a worker on another machine would run, given the address and the key."""
    return subprocess.run(
        [sys.executable, "-m", "workers.managers", "worker", f"{address[0]}:{address[1]}"],
        env={**os.environ, AUTHKEY_ENV: key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_worker_joins_by_address_and_key_alone() -> None:
    job = Job("sum", 100_000, 5)
    context = get_context(workers.default_start_method())
    with serving(context) as (manager, authkey):
        todo, done = manager.todo(), manager.done()
        for chunk in split(job):
            todo.put(chunk.to_message())
        todo.put(None)
        finished = run_worker_command(manager.address, authkey.hex())  # type: ignore[arg-type]
        assert finished.returncode == 0, finished.stderr
        results = [done.get(timeout=10) for _ in range(job.chunks)]
        with pytest.raises(queue.Empty):
            done.get(timeout=0.1)
    assert f"joining 127.0.0.1:{manager.address[1]}" in finished.stdout  # type: ignore[index]
    assert {result.pid for result in results} != {os.getpid()}
    assert combine("sum", [result.value for result in results]) == check(job)


def test_a_wrong_authkey_is_refused() -> None:
    context = get_context(workers.default_start_method())
    with serving(context) as (manager, authkey):
        todo = manager.todo()
        todo.put(Chunk("sum", 0, 1, 10).to_message())
        wrong = bytes(byte ^ 1 for byte in authkey).hex()
        refused = run_worker_command(manager.address, wrong)  # type: ignore[arg-type]
        assert refused.returncode == 1
        assert "rejected the authkey" in refused.stderr
        assert todo.qsize() == 1, "a refused worker must not have taken anything"


def test_the_worker_command_needs_the_key_in_the_environment() -> None:
    environment = {key: value for key, value in os.environ.items() if key != AUTHKEY_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "workers.managers", "worker", "127.0.0.1:9"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert AUTHKEY_ENV in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--start-method", "spawn"], "--start-method applies to the processes executor only"),
        (["--ipc", "pipe"], "--ipc applies to the processes executor only"),
    ],
)
def test_processes_only_options_are_refused(arguments: list[str], message: str) -> None:
    result = conquer("run", "sum", "10", "--on", "managers", *arguments)
    assert result.returncode == ExitCode.USAGE
    assert message in result.stderr


def test_compare_includes_managers_through_the_registry() -> None:
    result = conquer("compare", "sum", "20000", "--repeats", "1", "--executors", "managers", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    rows = {row["executor"]: row for row in json.loads(result.stdout)["results"]}
    assert rows["managers"]["verified"] is True
