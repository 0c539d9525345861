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
        holding = _HOLDING.set(producer)
        try:
            with producer.batch(max_size=1_000_000):  # never flush part of a job early
                yield
        finally:
            _HOLDING.reset(holding)
            delattr(channel, "create_publish_batch")  # the channel's own method again


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
