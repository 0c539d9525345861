"""Where kombu (and Celery around it) is patched: sending a job's messages to Redis all or nothing.

A job is K chunk messages; a broker lost halfway through sending them must leave none queued — a chord
missing one chunk never completes. kombu can buffer publishes (`Producer.batch`), but two things stand
between that and one atomic send, each worked around here for as long as it stands:

1. kombu's Redis batch is a plain pipeline, not a transaction. `Producer.batch` arrived with
   celery/kombu#2572 (kombu 5.7) to save round trips, and its Redis `PublishBatch` is a pipeline with
   `transaction=False` by design: Redis runs the buffered commands one by one, so a connection lost
   (or a Redis out of memory) midway leaves some of the job queued and the rest not. `_transaction`
   is the same batch, executed as MULTI/EXEC. It can go when kombu offers a transactional batch
   (nothing upstream asks for one yet: a request citing #2572 is the way to get there).
2. Celery's chord cannot be handed the producer that holds the batch. Its header tasks are published
   with a producer taken from the app's pool; a `producer=` option given to `chord.apply_async` would
   reach the header, but `chord.run` also copies every option into the body's (`_body_options`), which
   travel as JSON inside each chunk message, where a Producer cannot go. So the app is made (once) to
   hand this thread the holding producer instead (`_route_through_holding_producer`). It can go when
   Celery's chord keeps a `producer=` option out of its body (no upstream issue known, as of Celery 5.7).

The Redis broker (`workers.celery.brokers.redis`) sends every job through `all_or_nothing`.

3. A remote-control reply can outlive its reader forever. A client that asks the workers (`inspect`,
   `ping`) reads the replies from its reply queue, a Redis list, and deletes it when done; a worker
   that looked up the queue's binding just before that delete pushes its reply just after, and the
   list is created again — by the worker, so without the expiry the client gave it (kombu's Redis
   transport sets a queue's expiry only in the channel that declared it). Each such reply is a key
   that never expires (celery/celery#6089, celery/kombu#294, both open). A client that stops at the
   first answer (`conquer submit`'s question, `workers.celery.consumers`) makes that race routine
   with two workers or more. `replies_expire` (run in every `celery worker`, `workers.celery.app`)
   has a worker give each reply queue it pushes to an expiry. It can go when kombu expires reply
   queues itself.

Usage::

    with all_or_nothing(app):
        chord(header, body).apply_async()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from workers.base import ExecutorError

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Producer

#: The producer holding this thread's messages back while `all_or_nothing` sends a job.
_HOLDING: ContextVar[Producer | None] = ContextVar("conquer_holding_producer", default=None)


@contextmanager
def all_or_nothing(app: Celery) -> Iterator[None]:
    """Within: the messages this thread publishes through `app` are held back, and on a clean exit
    reach Redis in one MULTI/EXEC transaction — all of them or, should Redis fail, none."""
    _route_through_holding_producer(app)
    with app.producer_or_acquire() as held:
        producer: Any = held  # kombu's stubs predate Producer.batch
        if not getattr(producer, "supports_batch_publish", False):
            # e.g. a connection set to retry commands: kombu would then publish one by one.
            raise ExecutorError("this broker connection cannot send a job all or nothing")
        channel = producer.channel
        setattr(channel, "create_publish_batch", partial(_transaction(), channel))  # noqa: B010
        try:
            with holding(app, producer), producer.batch(max_size=1_000_000):  # never flush part early
                yield
        finally:
            delattr(channel, "create_publish_batch")  # the channel's own method again


@contextmanager
def holding(app: Celery, producer: Producer) -> Iterator[None]:
    """Within: what this thread publishes through `app` — a chord's header included — goes through
    `producer` (fix 2 of the module's docstring). The RabbitMQ broker's transaction uses it too."""
    _route_through_holding_producer(app)
    token = _HOLDING.set(producer)
    try:
        yield
    finally:
        _HOLDING.reset(token)


@cache
def _transaction() -> Callable[..., Any]:
    """kombu's Redis publish batch, executed as MULTI/EXEC (fix 1 of the module's docstring)."""
    from kombu.transport.redis import PublishBatch  # type: ignore[attr-defined]

    class Transaction(PublishBatch):  # type: ignore[misc]
        def __init__(self, channel: Any, max_size: int) -> None:
            super().__init__(channel, max_size)
            self.pipeline.transaction = True

    return Transaction


def _route_through_holding_producer(app: Celery) -> None:
    """Make `app.producer_or_acquire()` hand out the holding producer, in the thread that has one
    (fix 2 of the module's docstring)."""
    if getattr(app, "_conquer_holding", False):
        return
    acquire = app.producer_or_acquire

    def producer_or_acquire(producer: Producer | None = None) -> Any:
        return acquire(producer if producer is not None else _HOLDING.get())

    setattr(app, "producer_or_acquire", producer_or_acquire)  # noqa: B010 (mypy: no method assignment)
    setattr(app, "_conquer_holding", True)  # noqa: B010


#: How long a reply queue a worker pushed to lives after its last reply: far longer than a client
#: takes to read a reply it is waiting for (at once), short enough that orphans do not pile up.
REPLY_EXPIRES_MS = 60_000


def replies_expire() -> None:
    """Make kombu's Redis channels give every remote-control reply queue they push to an expiry
    (fix 3 of the module's docstring). Idempotent; inert for other transports."""
    from kombu.transport.redis import Channel

    if getattr(Channel, "_conquer_replies_expire", False):
        return
    put = Channel._put

    def _put(self: Any, queue: str, message: Any, **kwargs: Any) -> None:
        # A reply queue is `{client's oid}.reply.{control exchange}.pidbox` (kombu.pidbox.Mailbox).
        if ".reply." not in queue or not queue.endswith(".pidbox") or queue in self._expires:
            return put(self, queue, message, **kwargs)
        # kombu's own path for a queue with an expiry: LPUSH and PEXPIRE in one pipeline. Set only
        # for this push, so that a long-running worker keeps no entry per client that ever asked.
        self._expires[queue] = REPLY_EXPIRES_MS
        try:
            return put(self, queue, message, **kwargs)
        finally:
            del self._expires[queue]

    setattr(Channel, "_put", _put)  # noqa: B010 (mypy: no method assignment)
    setattr(Channel, "_conquer_replies_expire", True)  # noqa: B010
