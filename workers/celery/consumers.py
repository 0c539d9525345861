"""Is anyone there? Whether a worker consumes the stack's queue, asked over Celery's remote control.

`conquer submit` asks before it sends anything, so that a job nobody would run is never queued (and
`conquer result` asks about a job still queued). The question is Celery's `active_queues` broadcast,
which every broker carries (Redis: pub/sub; RabbitMQ: a fanout exchange), so this module names no
broker. Only a worker answers it — Flower and other clients do not — and only a worker of the same
stack: a key prefix (CONQUER_KEY_PREFIX) or a virtual host keeps other stacks' workers from hearing
it. A worker counts only if it consumes the queue the job is sent to (`task_default_queue`): a worker
started with `-Q` for other queues answers, but would never run the job.

Cost: the first answer ends the wait (`limit=1`), a round trip of a few milliseconds on a stack that
has workers. With none, the full `timeout` passes. The other workers' answers come too late to be
read: in a Redis broker they would be keys that never expire, but for `workers.celery.kombu_fixes` (3).

A worker whose pool is *solo* runs its chunk in the thread that would answer: it answers only between
chunks, so one busy on a chunk longer than the timeout is not seen (the prefork pool, the default,
answers from its main process at once).

Usage::

    name = first_consumer(app, timeout=3)     # None: no worker consumes the queue
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workers.base import BrokerUnreachable
from workers.celery import brokers
from workers.celery.settings import mask

if TYPE_CHECKING:
    from celery import Celery


def first_consumer(app: Celery, timeout: float) -> str | None:
    """The name of a worker that consumes `app`'s queue, as soon as one answers; None if none did
    within `timeout` seconds. A broker lost meanwhile raises BrokerUnreachable."""
    queue = app.conf.task_default_queue
    broker = brokers.for_url(app.conf.broker_url)
    deadline = time.monotonic() + timeout
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            # The first answer, whoever it is from: almost always a worker of this stack, on its queue.
            # (None before the deadline: what came was a late answer to an earlier question of this
            # process, which takes the one reply asked for; ask again.)
            answers = _active_queues(app, remaining, limit=1)
            if answers:
                found = _consuming(answers, queue)
                if found is None:  # a worker of other queues answered first: hear them all
                    found = _consuming(_active_queues(app, deadline - time.monotonic(), limit=None), queue)
                return found
    except broker.errors(transient_only=True) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BrokerUnreachable(f"lost {broker.NAME} at {mask(app.conf.broker_url)}: {reason}") from None
    return None


def _active_queues(app: Celery, timeout: float, limit: int | None) -> dict[str, Any]:
    answers: dict[str, Any] | None = app.control.inspect(timeout=timeout, limit=limit).active_queues()
    return answers or {}


def _consuming(answers: dict[str, Any], queue: str) -> str | None:
    """The first worker (by name) among `answers` whose queues include `queue`."""
    for name in sorted(answers):
        if any(isinstance(each, dict) and each.get("name") == queue for each in answers[name] or []):
            return name
    return None
