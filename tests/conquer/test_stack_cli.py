"""`conquer submit/status/result/cancel/workers/up` through the installed entry point, against the
session's real Redis and worker processes (and, for `up`, a stack of its own)."""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import CONQUER, Stack, conquer, ctrl_c, one_line, wait_until
from tests.flower import flower_get
from workers.celery.jobstore import CANCELLED, SUCCESS
from workers.celery.localstack import free_port

UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"


def on(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return conquer(*args, timeout=timeout, env=stack.env)


def test_submit_wait_prints_the_verified_answer(celery_stack: Stack) -> None:
    result = on(celery_stack, "submit", "sum", "1e6", "--wait")
    assert result.returncode == ExitCode.OK, result.stderr
    assert f"answer  {10**6 * (10**6 + 1) // 2}" in result.stdout
    assert "✓ verified" in result.stdout
    assert re.search(r"workers conquer\d-", result.stdout)


def test_submit_returns_an_id_at_once_and_status_follows_progress_to_the_total(celery_stack: Stack) -> None:
    submitted = on(celery_stack, "submit", "download", "120", "--chunks", "24", "--latency", "0.01")
    assert submitted.returncode == ExitCode.OK, submitted.stderr
    job_id = submitted.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", job_id)
    seen: list[int] = []

    def finished() -> bool:
        status = celery_stack.client.status(job_id)
        seen.append(status.done)
        return status.state == SUCCESS

    wait_until(finished, 60, f"job {job_id} never finished")
    assert seen == sorted(seen), "progress never goes backwards"
    shown = json.loads(on(celery_stack, "status", job_id, "--json").stdout)
    assert shown["state"] == SUCCESS
    assert shown["chunks"] == {"total": 24, "done": 24, "failed": 0}
    assert sum(shown["workers"].values()) >= 24
    text = on(celery_stack, "status", job_id).stdout
    assert f"job {job_id}  SUCCESS" in text
    assert "24/24 done, 0 failed" in text


def test_result_json_has_the_answer_its_check_and_who_ran_each_chunk(celery_stack: Stack) -> None:
    job_id = on(celery_stack, "submit", "primes", "30000", "--chunks", "6").stdout.strip()
    result = on(celery_stack, "result", job_id, "--timeout", "60", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["value"] == report["expected"] == check(Job("primes", 30000, 6))
    assert report["verified"] is True
    assert report["check_method"] == "segmented sieve of Eratosthenes"
    chunks = report["chunk_results"]
    assert [chunk["index"] for chunk in chunks] == list(range(6))
    assert {chunk["host"] for chunk in chunks} <= set(celery_stack.stack.worker_names)


def test_a_failing_chunk_exits_1_naming_its_range(celery_stack: Stack) -> None:
    result = on(celery_stack, "submit", "sum", "1000", "--chunks", "4", "--fail-at", "600", "--wait")
    assert result.returncode == ExitCode.JOB_FAILED
    assert one_line(result.stderr).endswith(
        "chunk 2 [501, 751) failed: InjectedFault: injected fault at item 600"
    )


def test_cancel_revokes_what_is_left_and_frees_the_workers(celery_stack: Stack) -> None:
    client = celery_stack.client
    # 40 chunks of 1 s on 2 processes: 20 s, far more than a CLI start under load, so the job is
    # still running when `cancel` comes (at 0.2 s a chunk, 4 s in all, it once had finished).
    job_id = client.submit(Job("download", 400, 40, latency=0.1))
    wait_until(lambda: client.status(job_id).done >= 2, 30, "the job never started")
    cancelled = on(celery_stack, "cancel", job_id)
    assert cancelled.returncode == ExitCode.OK, cancelled.stderr
    assert re.fullmatch(rf"job {job_id} cancelled: \d+ of 40 chunk\(s\) revoked\n", cancelled.stdout)
    # Free: a new job goes through both workers at once, while the cancelled one never finishes.
    follow_up = on(celery_stack, "submit", "sum", "1000", "--wait", "--timeout", "30")
    assert follow_up.returncode == ExitCode.OK, follow_up.stderr
    status = client.status(job_id)
    assert status.state == CANCELLED
    assert status.done < status.total
    result = on(celery_stack, "result", job_id, "--timeout", "0")
    assert result.returncode == ExitCode.CANCELLED
    assert "was cancelled" in one_line(result.stderr)
    again = on(celery_stack, "cancel", job_id)
    assert "already over (CANCELLED)" in again.stdout


def test_workers_lists_each_worker_its_pool_and_its_running_chunks(celery_stack: Stack) -> None:
    client = celery_stack.client
    job_id = client.submit(Job("download", 60, 6, latency=0.1))  # 6 chunks of 1 s
    wait_until(lambda: client.status(job_id).state == "RUNNING", 30, "the job never started")
    listed = on(celery_stack, "workers", "--json")
    assert listed.returncode == ExitCode.OK, listed.stderr
    workers = json.loads(listed.stdout)
    assert {worker["name"] for worker in workers} == set(celery_stack.stack.worker_names)
    assert all(worker["pool"] == "prefork" and worker["concurrency"] == 1 for worker in workers), workers
    running = [active for worker in workers for active in worker["active"]]
    assert running, "a worker should be running one of the job's chunks"
    assert all(active["job"] == job_id and "download chunk" in active["chunk"] for active in running)
    text = on(celery_stack, "workers").stdout
    assert "prefork pool, 1 process(es)" in text
    client.cancel(job_id)


def test_a_result_not_ready_by_the_deadline_exits_4_printing_the_id(celery_stack: Stack) -> None:
    client = celery_stack.client
    job_id = client.submit(Job("download", 40, 4, latency=0.25))  # 4 chunks of 2.5 s on 2 processes
    result = on(celery_stack, "result", job_id, "--timeout", "0.2")
    assert result.returncode == ExitCode.TIMEOUT
    assert f"conquer result {job_id}" in one_line(result.stderr)
    assert client.status(job_id).state in ("QUEUED", "RUNNING")
    client.cancel(job_id)


def test_an_unknown_job_exits_5(celery_stack: Stack) -> None:
    for command in ("status", "result", "cancel"):
        result = on(celery_stack, command, "0123456789abcdef")
        assert result.returncode == ExitCode.UNKNOWN_JOB
        assert "no job 0123456789abcdef" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["status", "xyz"], "'xyz' is not a job id"),
        (["result", "0123456789abcdeg"], "is not a job id"),
        (["cancel", "0123456789abcdef0"], "is not a job id"),
        (["result", "0123456789abcdef", "--timeout", "-1"], "not in the range"),
        (["submit", "sum", "0"], "n must be at least 1"),
        (["submit", "cube", "10"], "'cube' is not one of"),
        (["submit", "sum", "10", "--chunks", "11"], "cannot exceed n"),
        (["submit", "download", "1000", "--chunks", "1", "--latency", "1"], "over the chunk time limit"),
        (["workers", "--timeout", "0"], "not in the range"),
        (["up", "--workers", "0"], "workers must be between 1 and 64"),
        (["up", "--processes", "65"], "processes must be between 1 and 64"),
        (["submit", "sum", "-5"], "Invalid value for 'N': -5 is negative"),
        # Options that would be ignored are refused.
        (["submit", "sum", "10", "--timeout", "5"], "--timeout applies only with --wait"),
        (["run", "sum", "10", "--on", "celery", "--workers", "2"], "--workers does not apply to --on celery"),
        (["up", "--no-flower", "--flower-port", "5555"], "--flower-port applies only with Flower"),
        (["CONQUER_WORKER_POOL=solo", "up", "--processes", "2"], "does not apply to the solo pool"),
    ],
)
def test_bad_input_exits_2_before_the_broker_is_contacted(arguments: list[str], message: str) -> None:
    """The broker URL is unreachable: an exit of 2 (not 3) proves nothing was sent. Words before the
    command set a variable, as in a shell."""
    settings = [word.partition("=")[::2] for word in arguments if "=" in word and word[0].isupper()]
    result = conquer(*arguments[len(settings) :], env={"CELERY_BROKER_URL": UNREACHABLE, **dict(settings)})
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert message in one_line(result.stderr)
    assert result.stdout == ""


def test_a_flower_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = conquer("up", "--flower-port", str(port), env={"CELERY_BROKER_URL": UNREACHABLE})
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert f"port {port} is in use on 127.0.0.1" in one_line(result.stderr)
    assert result.stdout == ""


def test_no_worker_answering_exits_8_naming_the_broker(celery_stack: Stack) -> None:
    """The session's Redis, under a key prefix no worker uses: the broker answers, no worker does."""
    result = conquer(
        "workers", "--timeout", "0.5", env={**celery_stack.env, "CONQUER_KEY_PREFIX": "conquer-nobody"}
    )
    assert result.returncode == ExitCode.NO_WORKER, result.stderr
    assert one_line(result.stderr).startswith("conquer: no worker answered within 0.5 s at ")


def test_a_setting_that_cannot_work_exits_2_naming_it() -> None:
    result = conquer("status", "0123456789abcdef", env={"CONQUER_WORKER_POOL": "gevent"})
    assert result.returncode == ExitCode.USAGE
    assert "CONQUER_WORKER_POOL must be one of prefork, threads, solo" in one_line(result.stderr)


@pytest.mark.parametrize(
    "arguments",
    [
        ["submit", "sum", "100"],
        ["status", "0123456789abcdef"],
        ["result", "0123456789abcdef"],
        ["workers"],
        ["up", "--no-flower"],
    ],
)
@pytest.mark.parametrize("url", [UNREACHABLE, "redis://:hunter2@nowhere.invalid:6379/0"])
def test_an_unreachable_broker_exits_3_within_5_s_with_the_url_masked(arguments: list[str], url: str) -> None:
    began = time.monotonic()
    result = conquer(*arguments, env={"CELERY_BROKER_URL": url})
    assert time.monotonic() - began < 5 + 2  # + the interpreter's start-up
    assert result.returncode == ExitCode.BROKER_UNREACHABLE
    line = one_line(result.stderr)
    assert url.replace("hunter2", "***") in line
    assert "hunter2" not in result.stderr + result.stdout


# --------------------------------------------------------------------------------------- conquer up


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """stdout of `process` up to `marker`, failing at the deadline. (Reads the pipe's descriptor
    directly: a buffered readline would hide data already read from the selector.)"""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    text = b""
    try:
        while marker.encode() not in text:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                pytest.fail(f"`conquer up` did not print {marker!r} in {timeout} s; it printed: {text!r}")
            if selector.select(remaining):
                text += os.read(descriptor, 65536)
    finally:
        selector.close()
    return text.decode()


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any Celery or conquer setting, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "CONQUER_"))}
    return {**env, **settings}


def start(*arguments: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`conquer ARGUMENTS` in a session of its own (for `ctrl_c`), its output read through pipes."""
    return subprocess.Popen(
        [CONQUER, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def live_workers(broker_url: str) -> list[dict[str, Any]]:
    listed = conquer("workers", "--json", "--timeout", "2", env={"CELERY_BROKER_URL": broker_url})
    assert listed.returncode == ExitCode.OK, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


@pytest.mark.usefixtures("embedded_redis")
def test_up_runs_a_stack_that_takes_jobs_and_ctrl_c_stops_all_of_it() -> None:
    # One pool process per worker, from the environment: `up` respects it and says so.
    process = start(
        "up",
        "--workers",
        "2",
        "--flower-port",
        str(free_port()),
        env=clean_env(CONQUER_WORKER_CONCURRENCY="1"),
    )
    try:
        banner = read_until(process, "Press Ctrl-C", 90)
        broker = re.search(r"export CELERY_BROKER_URL=(\S+)", banner)
        flower = re.search(r"flower\s+(http://127\.0\.0\.1:\d+)\s+user (\S+)\s+password (\S+)", banner)
        assert broker, banner
        assert flower, banner
        assert (
            "workers  2 (--workers), each with a prefork pool of 1 process(es) (CONQUER_WORKER_CONCURRENCY)"
            in banner
        )
        stack_dir = Path(broker.group(1).removeprefix("redis+socket://")).parent
        started = psutil.Process(process.pid).children(recursive=True)
        assert len(started) >= 4  # Redis, a worker and its pool processes, Flower
        # What it printed is what runs: the workers it named, each with the pool it said.
        running = live_workers(broker.group(1))
        assert sorted(worker["name"] for worker in running) == re.findall(
            r"^ +(conquer\d-\S+@\S+)$", banner, re.M
        )
        assert all(worker["pool"] == "prefork" and worker["concurrency"] == 1 for worker in running), running
        job = conquer("submit", "sum", "1e5", "--wait", env={"CELERY_BROKER_URL": broker.group(1)})
        assert job.returncode == ExitCode.OK, job.stderr
        assert "✓ verified" in job.stdout
        url, user, password = flower.groups()
        assert flower_get(f"{url}/api/workers")[0] == 401
        assert flower_get(f"{url}/api/workers", (user, password))[0] == 200
    finally:
        _, stderr = ctrl_c(process, timeout=60)
    assert process.returncode == ExitCode.OK, stderr
    assert b"stopped" in stderr
    _, alive = psutil.wait_procs(started, timeout=15)
    assert not alive
    assert not stack_dir.exists()


@pytest.mark.usefixtures("embedded_redis")
def test_up_flags_win_over_the_environment_and_a_dead_worker_ends_it_with_exit_9() -> None:
    process = start("up", "--processes", "2", "--no-flower", env=clean_env(CONQUER_WORKER_CONCURRENCY="3"))
    try:
        banner = read_until(process, "Press Ctrl-C", 90)
        assert (
            "workers  1 (the default), each with a prefork pool of 2 process(es) "
            "(--processes, over CONQUER_WORKER_CONCURRENCY=3)" in banner
        )
        broker = re.search(r"export CELERY_BROKER_URL=(\S+)", banner)
        assert broker, banner
        (worker,) = live_workers(broker.group(1))
        assert worker["concurrency"] == 2
        assert len(worker["processes"]) == 2
        (node,) = [p for p in psutil.Process(process.pid).children() if worker["name"] in p.cmdline()]
        node.kill()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            ctrl_c(process, timeout=60)
    assert process.returncode == ExitCode.STACK_FAILED, stderr
    assert one_line(stderr.decode()).startswith(
        f"conquer: the local stack failed: {worker['name']} exited with code -9"
    )
