"""`conquer submit/status/result/cancel/workers` with RabbitMQ as the broker (issue 12, part 1):
through the installed entry point, against the session's private RabbitMQ node, its Redis result
backend and two real `celery worker` processes (`tests.rabbitmq_server`); and what a user who
points CELERY_BROKER_URL at RabbitMQ wrongly gets — one line and a documented exit code."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import conquer, one_line, wait_until
from tests.rabbitmq_server import RabbitMQStack
from workers.celery.jobstore import CANCELLED, SUCCESS

UNREACHABLE = "amqp://conquer:hunter2@127.0.0.1:1//"
BACKEND_UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"


def on(rabbit: RabbitMQStack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return conquer(*args, timeout=timeout, env=rabbit.stack.env)


def test_the_stack_s_broker_is_rabbitmq_and_its_backend_redis(rabbitmq_stack: RabbitMQStack) -> None:
    settings = rabbitmq_stack.stack.stack.settings
    assert settings.broker_url.startswith("amqp://")
    assert settings.result_backend.startswith("redis+socket://")
    assert rabbitmq_stack.stack.stack.app.conf.broker_heartbeat == 5


def test_submit_wait_prints_the_verified_answer(rabbitmq_stack: RabbitMQStack) -> None:
    result = on(rabbitmq_stack, "submit", "sum", "1e6", "--wait")
    assert result.returncode == ExitCode.OK, result.stderr
    assert f"answer  {10**6 * (10**6 + 1) // 2}" in result.stdout
    assert "✓ verified" in result.stdout


def test_submit_status_and_result_follow_a_job_to_its_exact_answer(rabbitmq_stack: RabbitMQStack) -> None:
    submitted = on(rabbitmq_stack, "submit", "primes", "30000", "--chunks", "6")
    assert submitted.returncode == ExitCode.OK, submitted.stderr
    job_id = submitted.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", job_id)
    result = on(rabbitmq_stack, "result", job_id, "--timeout", "60", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["value"] == report["expected"] == check(Job("primes", 30000, 6))
    assert {chunk["host"] for chunk in report["chunk_results"]} <= set(
        rabbitmq_stack.stack.stack.worker_names
    )
    shown = json.loads(on(rabbitmq_stack, "status", job_id, "--json").stdout)
    assert shown["state"] == SUCCESS
    assert shown["chunks"] == {"total": 6, "done": 6, "failed": 0}


def test_workers_lists_both_workers_and_cancel_frees_them(rabbitmq_stack: RabbitMQStack) -> None:
    client = rabbitmq_stack.stack.client
    # 40 chunks of 1 s on 2 processes: 20 s, so the job is still running when `cancel` comes, after
    # two CLI starts (2-4 s at load 2; with chunks of 0.2 s, once in a combined run it had finished).
    job_id = client.submit(Job("download", 400, 40, latency=0.1))
    wait_until(lambda: client.status(job_id).done >= 2, 30, "the job never started")
    listed = on(rabbitmq_stack, "workers", "--json")
    assert listed.returncode == ExitCode.OK, listed.stderr
    workers = json.loads(listed.stdout)
    assert {worker["name"] for worker in workers} == set(rabbitmq_stack.stack.stack.worker_names)
    cancelled = on(rabbitmq_stack, "cancel", job_id)
    assert cancelled.returncode == ExitCode.OK, cancelled.stderr
    assert re.fullmatch(rf"job {job_id} cancelled: \d+ of 40 chunk\(s\) revoked\n", cancelled.stdout)
    follow_up = on(rabbitmq_stack, "submit", "sum", "1000", "--wait", "--timeout", "30")
    assert follow_up.returncode == ExitCode.OK, follow_up.stderr
    status = client.status(job_id)
    assert status.state == CANCELLED
    assert status.done < status.total
    result = on(rabbitmq_stack, "result", job_id, "--timeout", "0")
    assert result.returncode == ExitCode.CANCELLED


# ------------------------------------------------------------------------- what a user gets wrong


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a broker host that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, name="silent-listener")
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        server.close()


COMMANDS = [
    ["submit", "sum", "100"],
    ["status", "0123456789abcdef"],
    ["result", "0123456789abcdef"],
    ["cancel", "0123456789abcdef"],
    ["workers"],
]


@pytest.mark.parametrize("arguments", COMMANDS, ids=lambda arguments: arguments[0])
@pytest.mark.parametrize("hangs", [False, True], ids=["refused", "silent"])
def test_an_unreachable_rabbitmq_exits_3_within_5_s_with_the_url_masked(
    arguments: list[str], hangs: bool, silent_listener: int
) -> None:
    """Refused at once, or a host that accepts and never answers the AMQP handshake: either way one
    line within the client's 4 s reach timeout (+ the interpreter's start-up), never kombu's retry loop."""
    url = f"amqp://conquer:hunter2@127.0.0.1:{silent_listener}//" if hangs else UNREACHABLE
    began = time.monotonic()
    result = conquer(*arguments, env={"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": BACKEND_UNREACHABLE})
    elapsed = time.monotonic() - began
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert "cannot reach RabbitMQ at " + url.replace("hunter2", "***") in line
    assert "hunter2" not in result.stderr + result.stdout
    assert elapsed < 5 + 2, elapsed


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CELERY_BROKER_URL": "amqp://conquer:hunter2@127.0.0.1:5672//"},
            "CELERY_BROKER_URL is a RabbitMQ URL: set CELERY_RESULT_BACKEND to a Redis URL too",
        ),
        (
            {
                "CELERY_BROKER_URL": "amqp://conquer:hunter2@127.0.0.1:notaport//",
                "CELERY_RESULT_BACKEND": "redis://",
            },
            "CELERY_BROKER_URL is 'amqp://conquer:***@127.0.0.1:notaport//': its port must be a number",
        ),
        (
            {
                "CELERY_BROKER_URL": "amqp://127.0.0.1//",
                "CELERY_RESULT_BACKEND": "amqp://conquer:hunter2@h//",
            },
            "CELERY_RESULT_BACKEND must be a Redis URL",
        ),
        (
            {
                "CELERY_BROKER_URL": "amqp://127.0.0.1//",
                "CELERY_RESULT_BACKEND": "redis://",
                "CONQUER_CHUNK_TIME_LIMIT": "1800",
            },
            "must stay below RabbitMQ's consumer_timeout (1800 s by default)",
        ),
    ],
    ids=["amqp-without-a-backend", "amqp-bad-port", "amqp-as-backend", "over-consumer-timeout"],
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda arguments: arguments[0])
def test_an_amqp_setting_that_cannot_work_exits_2_in_one_line(
    command: list[str], env: dict[str, str], message: str
) -> None:
    result = conquer(*command, env=env)
    assert result.returncode == ExitCode.USAGE, result.stderr
    line = one_line(result.stderr)
    assert message in line
    assert "hunter2" not in result.stderr + result.stdout


def test_a_download_job_refused_on_redis_is_accepted_on_rabbitmq() -> None:
    """One chunk of 1000 s: over Redis's 15 s chunk limit (kept below its visibility timeout), so
    refused with exit 2 before anything is contacted; under RabbitMQ's 25 min, so it gets as far as
    the broker — here an unreachable one: exit 3."""
    job = ["submit", "download", "1000", "--chunks", "1", "--latency", "1"]
    on_redis = conquer(*job, env={"CELERY_BROKER_URL": BACKEND_UNREACHABLE})
    assert on_redis.returncode == ExitCode.USAGE
    assert "over the chunk time limit of 15 s" in one_line(on_redis.stderr)
    on_rabbitmq = conquer(
        *job, env={"CELERY_BROKER_URL": UNREACHABLE, "CELERY_RESULT_BACKEND": BACKEND_UNREACHABLE}
    )
    assert on_rabbitmq.returncode == ExitCode.BROKER_UNREACHABLE, on_rabbitmq.stderr


def test_run_on_celery_uses_the_configured_rabbitmq(rabbitmq_stack: RabbitMQStack) -> None:
    """`run --on celery` with an amqp broker configured starts its workers against it (no embedded
    Redis) and gets the exact answer."""
    result = on(rabbitmq_stack, "run", "sum", "1e5", "--on", "celery", "--json", timeout=120)
    assert result.returncode == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["value"] == check(Job("sum", 100_000, 16))
    assert report["details"]["broker"] == "external"
