"""Celery workers through a Redis broker: the job as `chord(group(chunk tasks), combine)`.

The broker version of the same job. Nothing is shared with the workers but Redis: each chunk's range
goes out as one message, each worker process takes one message at a time, and the partials come back
through the result backend, where the last one triggers the combine step on a worker. Each chunk's
record says which worker (Celery node name) and pid ran it.

With no broker configured (CELERY_BROKER_URL unset), `run` starts a private stack for the run — an
embedded Redis and `workers` worker processes (`workers.celery.localstack`) — and stops it afterwards;
with `broker="rabbitmq"`, a private RabbitMQ node is the broker and the embedded Redis the result
backend. With one configured, it sends the job there and the workers already running take it.

Starting the stack is a deployment cost, not part of any job: `wall_s` runs from sending the chord to
receiving the answer, and the start-up time is reported separately (`details["setup_s"]`). `compare`
starts the stack once (`deploy`) for all of its runs.

Usage::

    conquer run sum 100_000_000 --on celery --workers 2
    conquer run sum 1e8 --on celery --broker rabbitmq
    CELERY_BROKER_URL=redis://localhost:6379/0 conquer run sum 1e8 --on celery
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from tasks.job import Job
from workers.base import (
    ChunkError,
    ChunkResult,
    DeployingExecutor,
    ExecutorError,
    OnChunk,
    Report,
    WorkerLost,
    make_report,
)
from workers.celery import brokers
from workers.celery.client import Client
from workers.celery.jobstore import CANCELLED, FAILURE, JobStatus
from workers.celery.localstack import DEFAULT_BROKER, LocalStack, StackError, local_stack, node_layout
from workers.celery.settings import Settings, mask, settings

#: Slack on top of the longest the job can take when every chunk runs into its hard time limit.
DEADLINE_SLACK_S = 60.0


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Where the chunks go: a stack this process started, or an external one (stack None)."""

    client: Client
    #: Read by name by `conquer.usage` (whose meter counts the CPU time of `stack.processes`).
    stack: LocalStack | None
    setup_s: float

    def facts(self) -> dict[str, Any]:
        """What `run` and `compare` show about the deployment next to the timings."""
        name = brokers.for_url(self.client.settings.broker_url).NAME
        if self.stack is not None:
            return {
                "broker": "embedded",
                "broker_name": name,
                "stack": self.stack.describe(),
                "task_events": self.stack.settings.task_events,
                "chunk_time_limit_s": self.stack.settings.chunk_time_limit,
                "setup_s": round(self.setup_s, 3),
            }
        return {
            "broker": "external",
            "broker_name": name,
            "broker_url": mask(self.client.settings.broker_url),
        }


@contextmanager
def deploy(*, workers: int, base: Settings | None = None, broker: str | None = None) -> Iterator[Deployment]:
    """Connect to the configured broker, or start a private stack of `workers` worker processes on
    `broker` (a name of `localstack.EMBEDDABLE`; default: the embedded Redis). A configured broker
    that is not `broker` is an ExecutorError."""
    base = base or settings()
    began = time.monotonic()
    if base.broker_configured:
        configured = brokers.for_url(base.broker_url).NAME
        if broker is not None and broker != configured.lower():
            raise ExecutorError(
                f"broker {broker} asked for, but the configured broker is {configured} "
                f"({mask(base.broker_url)}): unset CELERY_BROKER_URL to start a private {broker}"
            )
        client = Client.connect(base)
        try:
            yield Deployment(client, None, time.monotonic() - began)
        finally:
            client.close()
        return
    node_settings, nodes = node_layout(base, workers)
    # A stack for runs has no monitor attached: task events would be two messages per chunk for
    # nobody. (`conquer up` keeps them: Flower shows them.)
    node_settings = dataclasses.replace(node_settings, task_events=False)
    try:
        with local_stack(node_settings, workers=nodes, broker=broker or DEFAULT_BROKER) as stack:
            yield Deployment(Client(stack.app, stack.settings), stack, stack.startup_s)
    except StackError as error:
        raise ExecutorError(f"the embedded Celery stack failed: {error}") from None


def run(
    job: Job,
    *,
    workers: int,
    progress: OnChunk | None = None,
    deployment: Deployment | None = None,
    timeout: float | None = None,
    broker: str | None = None,
) -> Report:
    """Run `job` through Celery and return the report (chunk records name each worker and pid);
    without a `deployment`, deploys one on `broker` for this run."""
    if deployment is None:
        with deploy(workers=workers, broker=broker) as own:
            return run(job, workers=workers, progress=progress, deployment=own, timeout=timeout)
    client, stack = deployment.client, deployment.stack
    deadline = timeout if timeout is not None else expected_limit(job, workers, client.settings)

    def on_record(record: dict[str, Any]) -> None:
        if progress:
            progress(ChunkResult(**record))

    def on_poll(status: JobStatus) -> None:
        if status.state == FAILURE and status.failure:
            raise ChunkError(*status.failure) if status.failure[0] else ExecutorError(status.failure[1])
        if stack is not None and not stack.alive_workers():
            raise WorkerLost(
                f"every worker of the embedded stack exited with {status.total - status.done} chunk(s) to go"
            )

    began = time.perf_counter()
    job_id = client.submit(job)
    try:
        status = client.wait(job_id, deadline, on_record=on_record if progress else None, on_poll=on_poll)
    except BaseException:
        # Failed, timed out or interrupted: the chunks still queued or running are of no use to anyone.
        _cancel_quietly(client, job_id)
        raise
    wall = time.perf_counter() - began
    if status.state == CANCELLED:
        raise ExecutorError(f"job {job_id} was cancelled")
    results = [ChunkResult(**record) for record in client.records(job_id)]
    report = make_report(
        job,
        "celery",
        results,
        wall,
        workers=workers,
        details={**deployment.facts(), "job_id": job_id, "pool": client.settings.worker_pool},
    )
    if status.value != report.value:
        raise ExecutorError(f"the combine step returned {status.value}, the chunks add up to {report.value}")
    return report


def expected_limit(job: Job, workers: int, settings: Settings) -> float:
    """The longest `job` can take on `workers` processes if every chunk runs up to its hard time
    limit: a deadline that a working stack never reaches."""
    return math.ceil(job.chunks / max(workers, 1)) * settings.hard_time_limit + DEADLINE_SLACK_S


def _cancel_quietly(client: Client, job_id: str) -> None:
    with suppress(Exception):  # the stack may be what failed; its keys expire anyway
        client.cancel(job_id)


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers.celery import chord as this  # noqa: PLW0406 (a module names itself only by importing)

    _: DeployingExecutor[Deployment] = this
