"""Drills where RabbitMQ fails (issue 12, part 4): the node restarted mid-job, up only after the
workers, down at submit, and lost in the middle of a submit — as `test_broker_faults.py` does them to Redis.

A private RabbitMQ node for the module (`tests.rabbitmq_server`: its own name, ports, data and epmd;
the shared server on 5672 is never touched), which these drills stop and start; a private Redis as
the result backend, which stays up. Skipped in one line where `rabbitmq-server` is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import conquer, one_line, wait_until
from tests.drills.test_broker_faults import (
    SLOW_JOB,
    SLOW_JOB_ARGS,
    DroppingProxy,
    failed_submit,
    never_runs,
    serve_once_the_broker_is_up,
    worker_logs,
)
from tests.rabbitmq_server import DrillBroker, drill_broker, queue_depth
from workers.celery.client import Client
from workers.celery.jobstore import SUCCESS
from workers.celery.localstack import local_stack
from workers.celery.settings import mask

#: Deadline for a job that has to survive a node restart: the node is down for its stop and its boot
#: (4.9-21.1 s measured here, at load 2-10), and workers retry the connection after 2, 4, 6 ... s
#: (kombu's defaults), so one that has just missed the node waits longer still: the job was done
#: 3.2-16.9 s after the node answered. 90 s is twice the worst of those added up.
RECOVERY_S = 90


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillBroker]:
    with drill_broker(tmp_path_factory.mktemp("rabbitmq-broker-drills"), kept=True) as found:
        yield found


# ------------------------------------------------------------------ 3. RabbitMQ restarted mid-job


@pytest.mark.parametrize("crash", [False, True], ids=["SIGTERM", "SIGKILL"])
def test_a_job_survives_a_rabbitmq_restart_mid_job_with_the_exact_answer(
    broker: DrillBroker, crash: bool
) -> None:
    """The node stops mid-job — cleanly (SIGTERM) or killed (SIGKILL, as by the OOM killer) — and
    starts again on its data: the queue is durable, the chunk messages persistent and sent in a
    transaction, which RabbitMQ makes durable on commit (its "Broker Semantics" page), so the queued
    chunks survive either way; those delivered and not yet acknowledged are requeued, and run again
    (counted once). The answer is exact and the combine step runs once."""
    with local_stack(broker.settings(), workers=2) as stack:
        client = Client(stack.app, stack.settings)
        submitted = conquer("submit", *SLOW_JOB_ARGS, env=stack.settings.to_env(), timeout=60)
        assert submitted.returncode == ExitCode.OK, submitted.stderr
        job_id = submitted.stdout.strip()
        wait_until(lambda: client.status(job_id).done >= 2, 30, "the job never got going")

        stopped = time.monotonic()
        broker.restart(crash=crash)
        up = time.monotonic()
        status = client.wait(job_id, RECOVERY_S)
        done = time.monotonic()
        assert (status.state, status.value) == (SUCCESS, check(SLOW_JOB)), (
            f"{status.error}\n{worker_logs(stack)}"
        )
        print(
            f"\n[rabbitmq drill 3] {'SIGKILL' if crash else 'SIGTERM'}: "
            f"node down {up - stopped:.1f} s (stop + boot); "
            f"job done {done - up:.1f} s after it answered; {status.attempts} chunk runs for {status.total}"
        )
        wait_until(lambda: queue_depth(broker.node) == 0, 30, "chunks left in the queue")
        wait_until(lambda: client.status(job_id).combines >= 1, 10, "no combine recorded")
        assert client.status(job_id).combines == 1
        # The workers consume again: a fresh job goes all the way through them.
        follow_up = conquer(
            "submit", "sum", "1e5", "--wait", "--json", "--timeout", "60", env=stack.settings.to_env()
        )
        assert follow_up.returncode == ExitCode.OK, follow_up.stderr
        assert json.loads(follow_up.stdout)["value"] == check(Job("sum", 100_000, 16))


# ------------------------------------------------------------------- 4. RabbitMQ up after the workers


def test_workers_started_before_rabbitmq_serve_once_it_is_up(broker: DrillBroker) -> None:
    """Workers started while the node is down keep retrying (none gives up and exits), and serve as
    soon as it answers: a worker host booting before its broker host needs no restart."""
    broker.node.stop()
    try:
        with local_stack(broker.settings(), workers=2, wait=False) as stack:
            client = Client(stack.app, stack.settings)
            serving = serve_once_the_broker_is_up(stack, client, broker.restart, RECOVERY_S)
            print(f"\n[rabbitmq drill 4] workers answered {serving:.1f} s after the node came up")
    finally:
        if broker.node.process is None:  # the test failed before the node came back
            broker.restart()


# ------------------------------------------------------------------- 5. RabbitMQ down at submit


COMMANDS = [["submit", "sum", "100"], ["status", "0123456789abcdef"], ["workers"]]


def test_rabbitmq_down_at_submit_exits_3_in_one_line_and_sends_nothing(broker: DrillBroker) -> None:
    """The node is stopped: each command exits 3 within the client's reach timeout, naming the URL with
    its password masked; once the node is back, its queue holds nothing of those submits."""
    settings = broker.settings()
    env = settings.to_env()
    password = settings.broker_url.split(":")[2].partition("@")[0]
    broker.node.stop()
    took = []
    try:
        for command in COMMANDS:
            began = time.monotonic()
            result = conquer(*command, env=env)
            elapsed = time.monotonic() - began
            assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
            line = one_line(result.stderr)
            assert f"cannot reach RabbitMQ at {mask(settings.broker_url)}" in line
            assert password not in result.stderr + result.stdout
            assert elapsed < 5 + 2, elapsed  # the client's 4 s reach timeout + the interpreter's start
            took.append(elapsed)
    finally:
        broker.restart()
    assert queue_depth(broker.node) == 0
    print(f"\n[rabbitmq drill 5] node down: exit 3 after {min(took):.2f}-{max(took):.2f} s")


class AmqpDroppingProxy(DroppingProxy):
    """`DroppingProxy` for AMQP: drops the connection at the `cut_at`-th basic.publish method frame
    (frame type 1, channel, size, then class 60 "basic", method 40 "publish"), forwarding the publishes
    before it — a broker lost in the middle of sending a job, before its tx.commit."""

    PUBLISH = b"\x00\x3c\x00\x28"

    def _cut_point(self, received: bytes) -> int | None:
        at = received.find(self.PUBLISH)
        while at != -1:
            if at >= 7 and received[at - 7] == 1:  # the method frame's header is 7 bytes
                self.lpushes += 1
                if self.lpushes == self.cut_at:
                    return at - 7
            at = received.find(self.PUBLISH, at + 1)
        return None


def test_a_submit_that_loses_rabbitmq_midway_leaves_no_chunk_to_run(broker: DrillBroker) -> None:
    """The job's publishes are one AMQP transaction: the connection dropped after three of sixteen
    leaves none of them queued (RabbitMQ discards an uncommitted transaction), the client says so in
    one line, the job is marked not sent, and no chunk of it ever runs."""
    job = Job("sum", 16_000, 16)
    settings = broker.settings()
    port = int(broker.node.url.rpartition(":")[2].rstrip("/"))
    with AmqpDroppingProxy(port, cut_at=4, outage_s=1.5) as proxy:
        through_proxy = broker.node.url.replace(f":{port}/", f":{proxy.port}/")
        failure, took = failed_submit(dataclasses.replace(settings, broker_url=through_proxy), job)
        assert proxy.lpushes >= proxy.cut_at, "the connection was meant to drop during the send"
        assert f"to {mask(through_proxy)} failed" in failure, failure
        assert "none of its chunks will run" in failure
        job_id = failure.split()[2]
    assert queue_depth(broker.node) == 0
    never_runs(settings, job_id)
    print(f"\n[rabbitmq drill 5] submit failed after {took:.2f} s with: {failure}")


def test_with_no_worker_on_rabbitmq_submit_exits_8_and_sends_nothing(broker: DrillBroker) -> None:
    """The node answers but no worker consumes its queue: `submit`'s question (`active_queues` over
    remote control, a fanout exchange on RabbitMQ) gets no answer, so nothing is sent (exit 8)."""
    before = queue_depth(broker.node)
    result = conquer("submit", "sum", "1000", env=broker.settings().to_env())
    assert result.returncode == ExitCode.NO_WORKER, result.stderr
    assert "nothing was sent" in one_line(result.stderr)
    # Not "empty": once in 5 runs of this module, one message was left in the queue by an earlier
    # drill's stack (not identified yet; see the report of issue 12). What this submit sent is the
    # difference.
    assert queue_depth(broker.node) == before
