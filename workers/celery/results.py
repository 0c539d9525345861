"""Celery's Redis result backend, from a client's side: where a task's result is, waking when it is
published, and dropping the subscriptions Celery keeps.

The job store (`workers.celery.jobstore`) is what a client reads; Celery's own results matter to it in
two ways only — the combine step's result is published the moment the job is done (`Wake` sleeps
until then), and a chord Celery failed leaves its failure there (`result_key`). Celery, for its part,
subscribes to results a client never waits for: `close_app` and `forget_locally` undo that before the
Redis behind them may go away. (Redis whatever the broker: see `workers.celery.brokers`.)
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from workers.celery.brokers import redis

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult


def result_key(app: Celery, task_id: str) -> bytes:
    """The Redis key (and pub/sub channel) of a task's result in Celery's Redis backend."""
    backend: Any = app.backend
    return bytes(backend.get_key_for_task(task_id))


class Wake:
    """Sleeps that end early when the job's answer is published.

    The combine step's result is stored by Celery's Redis backend, which also PUBLISHes it on a
    channel named after the task: subscribed to it, a waiting client wakes at once instead of at its
    next poll. This is only a hint — the job store is what is read — so a lost connection just makes
    the sleep a plain one (redis-py subscribes again on its next connection). Not Celery's
    `AsyncResult.get`: on a lost connection its result consumer retries for some 20 s, logging each
    attempt to stderr, then raises RuntimeError.
    """

    def __init__(self, client: Any, channel: bytes) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.channel = channel

    def sleep(self, timeout: float) -> None:
        until = time.monotonic() + timeout
        try:
            if not self.pubsub.subscribed:
                self.pubsub.subscribe(self.channel)
            while self.pubsub.get_message(timeout=max(0.0, until - time.monotonic())) is None:
                if time.monotonic() >= until:
                    return
        except redis.errors(transient_only=True):
            time.sleep(max(0.0, until - time.monotonic()))

    def close(self) -> None:
        with suppress(Exception):  # the connection may be gone already; closing is best effort
            self.pubsub.close()


def close_app(app: Celery) -> None:
    """Close a client app for good, before its Redis may go away.

    Sending a group, Celery subscribes to each task's result channel and keeps the subscription until
    that result arrives — which for chunk tasks (ignore_result) it never does; each one is dropped only
    when its AsyncResult is garbage-collected, possibly after Redis stopped, printing a traceback from
    `__del__`. So: close the result consumer's pub/sub connection and forget the subscriptions first.
    (celery/celery#5320, open, tracks the subscriptions the Redis backend keeps; this and
    `forget_locally` can go once a group of ignore_result tasks no longer subscribes.)
    """
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None:
        consumer.stop()
        consumer.subscribed_to.clear()
    app.close()


def forget_locally(result: AsyncResult[Any]) -> None:
    """Drop the client's pub/sub subscription for `result` now, while Redis is certainly still up
    (Celery would otherwise do it whenever the object is garbage-collected)."""
    with suppress(Exception):  # best effort: the subscription dies with the connection anyway
        getattr(result.backend, "remove_pending_result", lambda _result: None)(result)
