"""Worker-side fault drills on RabbitMQ (issue 12, part 4): the Redis drills 1 and 2 of
`test_worker_faults.py`, and the load of `test_load.py`, with RabbitMQ as the broker.

Real `celery worker` processes on a private RabbitMQ node (`tests.rabbitmq_server`, one for the
module) with a private Redis as the result backend; each drill starts its own stack of two workers of
one pool process and stops it, so only one stack consumes the node's queue at a time. Skipped in one
line where `rabbitmq-server` is not installed.

What differs from Redis: RabbitMQ acknowledges for real. A worker that dies closes its connection
(the kernel does, for a SIGKILLed process), and RabbitMQ puts the deliveries it had not acknowledged
back in the queue at once — no visibility timeout to wait for.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest

from tasks import Job, check
from tests.conftest import Stack, wait_until
from tests.drills.test_load import CHUNKS, CLIENTS, JOBS, LOAD_BOUND_S, exact_load
from tests.drills.test_worker_faults import (
    NODES,
    STALL_S,
    pool_kill_drill,
    wait_for_last_chunk_running,
)
from tests.rabbitmq_server import DrillBroker, RabbitMQNode, drill_broker, queue_depth
from workers.celery.brokers.redis import redis_client
from workers.celery.client import Client
from workers.celery.jobstore import SUCCESS, JobStatus
from workers.celery.localstack import local_stack

#: Issue 12's target: a SIGKILLed worker's chunk starts again on another worker at most this long after
#: the kill. Measured here: 0.011-0.023 s in 6 runs at load 3-10 on the 2-core VM (the kernel closes the
#: dead worker's socket, RabbitMQ requeues, the idle survivor's prefetch slot takes it); the target
#: leaves two orders of magnitude for a busy machine.
REQUEUE_AFTER_KILL_S = 2.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillBroker]:
    with drill_broker(tmp_path_factory.mktemp("rabbitmq-drills"), kept=True) as found:
        yield found


@contextmanager
def drill_stack(broker: DrillBroker) -> Iterator[Stack]:
    """NODES workers of one pool process on the module's node, stopped on the way out."""
    with local_stack(broker.settings(), workers=NODES) as stack:
        connection = redis_client(stack.settings.result_backend)
        try:
            yield Stack(stack, Client(stack.app, stack.settings), connection, stack.settings.to_env())
        finally:
            connection.close()


def idle(stack: Stack, node: RabbitMQNode) -> bool:
    """Nothing queued, and no live worker running or holding a message: no chunk or combine of any
    job can run any more (RabbitMQ has no count of unacknowledged messages without its management
    plugin, so the workers are asked what they hold)."""
    if queue_depth(node) != 0:
        return False
    inspect = stack.client.app.control.inspect(timeout=1.0, limit=stack.stack.alive_workers())
    active: dict[str, Any] = inspect.active() or {}
    reserved: dict[str, Any] = inspect.reserved() or {}
    held = [task for tasks in (*active.values(), *reserved.values()) for task in tasks]
    return len(active) == stack.stack.alive_workers() and not held


def settled(stack: Stack, node: RabbitMQNode, job_id: str) -> JobStatus:
    wait_until(lambda: idle(stack, node), 30, "the broker or a worker still holds messages")
    return stack.client.status(job_id)


# --------------------------------------------------- drill 1: SIGKILL a whole worker mid-job


def test_a_sigkilled_worker_s_chunk_runs_again_on_the_other_within_2_s(broker: DrillBroker) -> None:
    """The killed worker's unacknowledged chunk is requeued when the kernel closes its connection, runs
    on the survivor within REQUEUE_AFTER_KILL_S, the answer is exact and the combine step runs once."""
    with drill_stack(broker) as drill:
        job = Job("download", 16, 8, latency=0.01, fault=f"slow:{STALL_S}@1")
        job_id = drill.client.submit(job)
        node, pid = wait_for_last_chunk_running(drill, job_id, job)
        victim = drill.stack.workers[drill.stack.worker_names.index(node)]
        (survivor,) = set(drill.stack.worker_names) - {node}
        pool = psutil.Process(victim.pid).children(recursive=True)
        assert pid in {child.pid for child in pool}

        killed = time.time()
        os.killpg(victim.pid, signal.SIGKILL)  # the worker leads its own process group: all of it
        victim.wait(timeout=10)
        _, alive = psutil.wait_procs(pool, timeout=10)
        assert not alive, f"pool processes survived their worker: {alive}"

        status = drill.client.wait(job_id, 60)
        assert (status.state, status.value) == (SUCCESS, check(job)), status.error
        rerun = drill.client.records(job_id)[0]
        assert (rerun["host"], rerun["index"]) == (survivor, 0)
        final = settled(drill, broker.node, job_id)
        assert final.combines == 1
        assert final.attempts == job.chunks + 1  # chunk 0 twice: on the victim, then on the survivor
        requeued_after = rerun["started"] - killed
        print(f"\n[rabbitmq drill 1] worker SIGKILL -> its chunk running again {requeued_after:.3f} s")
        assert requeued_after <= REQUEUE_AFTER_KILL_S


# --------------------------------------------------- drill 2: SIGKILL one pool process mid-chunk


def test_a_pool_process_killed_mid_chunk_has_its_chunk_run_again_and_the_answer_is_exact(
    broker: DrillBroker,
) -> None:
    """The worker lives on, so its connection stays open: the chunk comes back when the worker notices
    its dead pool process (reject_on_worker_lost) — the same bound as on Redis, the broker plays no
    part. Measured here: 0.11-4.68 s in 6 runs at load 3-10 (an earlier lab: 0.05-4.4 s)."""
    with drill_stack(broker) as stack:
        requeued_after = pool_kill_drill(stack, lambda job_id: settled(stack, broker.node, job_id))
        print(f"\n[rabbitmq drill 2] pool SIGKILL -> its chunk running again {requeued_after:.2f} s")


# ------------------------------------------------------------------ load: 50 jobs from 4 clients


def test_50_jobs_from_4_clients_are_all_exact_and_leave_nothing_queued(broker: DrillBroker) -> None:
    """The load of `test_load.py` through RabbitMQ: every answer exact, each job's combine run once,
    the queue empty afterwards, and every key the jobs made in the result backend expiring (there is no
    broker structure in that Redis to exempt: the broker is RabbitMQ)."""
    with drill_stack(broker) as stack:
        answers, wall = exact_load(stack.env)
        wait_until(lambda: idle(stack, broker.node), 30, "messages left after the load")
        combines = [stack.client.status(answer["id"]).combines for answer in answers]
        assert combines == [1] * JOBS
        prefix = stack.stack.settings.key_prefix
        forever = [key for key in stack.redis.scan_iter(match=f"{prefix}*") if stack.redis.ttl(key) == -1]
        assert forever == []
        print(
            f"\n[rabbitmq load] {JOBS} jobs × {CHUNKS} chunks from {CLIENTS} clients, 2 workers: {wall:.1f} s"
        )
        assert wall <= LOAD_BOUND_S
