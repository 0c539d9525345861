"""Exit 8: `conquer submit` sends nothing, and `conquer result` does not wait for a queued job, when no
worker consumes the job's queue — through the installed entry point, against real Redis servers and
real `celery worker`s. Neither Flower, nor a worker of other queues, nor the workers of another stack
sharing the Redis count as one. (Workers present, submit is unchanged: tests/conquer/test_stack_cli.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conquer.exitcodes import ExitCode
from conquer.stack_cli import WORKER_ANSWER_S
from tasks import Job
from tests.conftest import Stack, conquer, one_line, skip_without_redis_server, wait_until
from tests.redis_server import RedisServer, redis_server
from workers.celery.app import make_app
from workers.celery.client import Client
from workers.celery.localstack import WORKER_FLAGS, local_stack
from workers.celery.settings import Settings

#: How much longer than the check's own wait a refused submit may take: the interpreter's start-up,
#: Celery's imports and the broker's PING, which a loaded machine slows down. Measured, whole command
#: (3 s of it the check's wait), `conquer submit sum 10` to a Redis without workers, 2-core VM:
#: idle 3.3-3.9 s (8 runs); during `make test`, load 2: 3.45-4.65 s (18 runs); six CPU-bound
#: processes besides, load 7: 3.9-8.3 s, median 6.8 (8 runs). What the bound tells apart is a wait
#: for the job's deadline (`result`: 30 s, `submit --wait`: 600 s), not a second more or less: so it
#: sits well above the loaded maximum (7 s left 1.3 s of room at load 7, too little on a shared VM)
#: and well below the shortest deadline (3 + 15 = 18 s < 30 s).
START_UP_S = 15.0


def remote_control_keys(prefix: str = "") -> set[str]:
    """What Celery's remote control leaves in a Redis by design — `conquer workers` leaves the same:
    kombu's deadline for the binding of the reply queue (expiring, swept by kombu), and the binding
    tables of the control and reply exchanges. Names from kombu's own constants."""
    from kombu.transport.redis import Channel

    control = make_app(Settings()).conf.control_exchange
    tables = {
        Channel.keyprefix_queue % exchange for exchange in (f"{control}.pidbox", f"reply.{control}.pidbox")
    }
    return {prefix + key for key in (Channel.keyprefix_binding_deadlines, *tables)}


def keys(connection: redis.Redis, prefix: str = "") -> set[str]:
    return {key.decode() for key in connection.scan_iter(match=f"{prefix}*", count=1000)}


@pytest.fixture
def no_worker_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, with a password (to see it masked) and no worker at all."""
    skip_without_redis_server()
    with redis_server(tmp_path, password="hunter2") as server:
        yield server


def refused(arguments: list[str], env: dict[str, str], outcome: str) -> str:
    """Run `conquer ARGUMENTS`; check it exits 8 within the bound, with one line saying `outcome`;
    return that line."""
    began = time.monotonic()
    result = conquer(*arguments, env=env)
    took = time.monotonic() - began
    assert result.returncode == ExitCode.NO_WORKER, (result.returncode, result.stdout, result.stderr)
    assert took < WORKER_ANSWER_S + START_UP_S, took
    line = one_line(result.stderr)
    assert result.stdout == ""
    assert f"no worker answered within {WORKER_ANSWER_S:g} s at " in line
    assert f"; {outcome}: " in line
    return line


@pytest.mark.parametrize("wait", [[], ["--wait"], ["--wait", "--json"]])
def test_submit_with_no_worker_exits_8_and_leaves_nothing_in_the_broker(
    no_worker_redis: RedisServer, wait: list[str]
) -> None:
    env = {"CELERY_BROKER_URL": no_worker_redis.url}
    line = refused(["submit", "sum", "10", *wait], env, "nothing was sent")
    assert no_worker_redis.url.replace("hunter2", "***") in line
    assert "hunter2" not in line
    assert (
        "point CELERY_BROKER_URL at a stack that has some (`conquer up` starts one and prints its URL)"
        in line
    )
    connection = no_worker_redis.client()
    try:
        # No queue, no job record, no result: only what asking the workers leaves (see above).
        assert keys(connection) <= remote_control_keys(), keys(connection)
    finally:
        connection.close()


def test_result_of_a_queued_job_with_no_worker_exits_8_and_leaves_it_queued(
    no_worker_redis: RedisServer,
) -> None:
    settings = Settings().with_broker(no_worker_redis.url)
    client = Client(make_app(settings), settings)
    try:
        job_id = client.submit(Job("sum", 100, 4))  # the API sends without asking (as after a worker left)
        env = {"CELERY_BROKER_URL": no_worker_redis.url}
        refused(["result", job_id], env, f"job {job_id} stays queued")
        # Told not to wait, it does not ask either: the job is not done, exit 4 at once.
        assert conquer("result", job_id, "--timeout", "0", env=env).returncode == ExitCode.TIMEOUT
        status = client.status(job_id)
        assert (status.state, status.done) == ("QUEUED", 0)
        assert client.store.client.llen("conquer") == 4  # its chunks, still waiting for a worker
    finally:
        client.close()


def test_flower_and_a_worker_of_other_queues_are_not_workers_of_the_job(no_worker_redis: RedisServer) -> None:
    """A worker that answers, but consumes only another queue, and Flower, which watches the broker:
    neither would run the job."""
    settings = Settings(worker_concurrency=1).with_broker(no_worker_redis.url)
    elsewhere = (*WORKER_FLAGS, "--queues", "elsewhere")
    with local_stack(settings, workers=1, flower=True, worker_args=elsewhere) as stack:
        env = {"CELERY_BROKER_URL": no_worker_redis.url}
        listed = conquer("workers", "--timeout", "2", env=env)
        assert listed.returncode == ExitCode.OK, listed.stderr  # a worker does answer
        assert stack.worker_names[0] in listed.stdout
        refused(["submit", "sum", "10"], env, "nothing was sent")
        connection = no_worker_redis.client()
        try:
            assert connection.llen("conquer") == 0
            assert not {key for key in keys(connection) if re.search(r"conquer:job:|celery-task-meta", key)}
        finally:
            connection.close()


def test_the_workers_of_another_stack_on_the_same_redis_are_not_asked(celery_stack: Stack) -> None:
    """The session's workers share this Redis under their own key prefix: a client with another prefix
    does not hear them, and sends nothing (the keys under its prefix are only what asking leaves)."""
    prefix = f"{celery_stack.prefix.rstrip(':')}-other"
    env = {**celery_stack.env, "CONQUER_KEY_PREFIX": prefix}
    line = refused(["submit", "sum", "10", "--wait"], env, "nothing was sent")
    assert f"(CONQUER_KEY_PREFIX={prefix})" in line
    assert keys(celery_stack.redis, f"{prefix}:") <= remote_control_keys(f"{prefix}:")
    # The same command under the stack's own prefix runs at once.
    assert conquer("submit", "sum", "10", "--wait", env=celery_stack.env).returncode == ExitCode.OK


def test_a_reply_nobody_reads_any_more_expires(celery_stack: Stack) -> None:
    """`conquer submit` reads the first answer and deletes its reply queue; the other workers' answers,
    if routed just before the delete, create the list again. Pushed by a worker, it must expire
    (`workers.celery.kombu_fixes`, fix 3). Made certain here: a reply queue declared, asked through,
    and never read — kombu's `Mailbox._publish` is the broadcast without the reading."""
    from kombu.common import maybe_declare

    app = celery_stack.stack.app
    with app.connection_for_write() as connection:
        mailbox = app.control.mailbox(connection)
        channel = connection.default_channel
        reply_queue = mailbox.reply_queue(channel)
        maybe_declare(reply_queue)
        key = f"{celery_stack.prefix}{reply_queue.name}"
        try:
            mailbox._publish("ping", {}, reply_ticket="nobody-reads-it", channel=channel, timeout=5)
            workers = len(celery_stack.stack.worker_names)
            wait_until(lambda: celery_stack.redis.llen(key) == workers, 10, f"{workers} replies in {key}")
            assert 0 < celery_stack.redis.ttl(key) <= 60  # -1 without the fix: kept forever
        finally:
            reply_queue.delete()
