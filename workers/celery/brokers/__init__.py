"""The broker seam: what depends on which broker carries the chunk messages, behind one interface.

The broker is chosen by its URL (CELERY_BROKER_URL). What differs from one broker to another — the
URLs it takes, the Celery settings it needs, how to ping it, what it raises when it goes away, how a
job's messages reach it all or nothing, how a private server of it is run — is one module per broker
implementing `Broker`, found by the URL's scheme (`for_url`). The rest of the Celery side asks that
module and never names a broker.

The result backend is not part of this choice: it is Redis whatever the broker (the chord's counters
and the job store live there), so the Celery side uses `brokers.redis` for it directly.

Adding a broker is one module implementing `Broker` and its line in `_MODULES` (issue 12 added
RabbitMQ that way: `brokers.rabbitmq`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from workers.celery.brokers import rabbitmq, redis

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from celery import Celery

    from workers.celery.settings import Settings


class Broker(Protocol):
    """What a broker module provides; mypy checks each one against it (through `BROKERS`)."""

    #: The broker's name, as messages say it ("cannot reach Redis at ...").
    NAME: str
    #: The URL schemes that select it.
    SCHEMES: tuple[str, ...]
    #: True where a message taken by a worker that dies comes back only once `visibility_timeout`
    #: has passed (the protocol has no acknowledgements; kombu emulates them): a chunk must then end
    #: before that timeout, or a second worker gets it while the first still runs it.
    REDELIVERS_AFTER_TIMEOUT: bool
    #: The chunk time limit (soft, seconds) when CONQUER_CHUNK_TIME_LIMIT is unset: short where the
    #: visibility timeout bounds it (Redis), long where only CONSUMER_TIMEOUT_S does (RabbitMQ).
    CHUNK_TIME_LIMIT_S: int
    #: Seconds after which the broker itself takes back a delivery still unacknowledged, whatever the
    #: settings (RabbitMQ's `consumer_timeout`); the chunk hard time limit must stay below it. None
    #: where no such server-side bound exists (Redis: the visibility timeout, a setting, is the bound).
    CONSUMER_TIMEOUT_S: int | None

    def check_url(self, url: str) -> None:
        """Raise ValueError, saying why without quoting the URL (it may hold a password), if `url` —
        of one of SCHEMES — cannot work."""
        ...

    def config(self, settings: Settings) -> dict[str, Any]:
        """The Celery settings this broker needs beyond `broker_url` (its transport options)."""
        ...

    def ping(self, url: str, timeout: float, *, ca_file: str = "") -> None:
        """Return once the broker at `url` answers; raise what its client raised otherwise. `ca_file`:
        a CA certificate to trust over TLS (CONQUER_BROKER_CA_FILE), '' for the system's."""
        ...

    def errors(self, *, transient_only: bool = False) -> tuple[type[Exception], ...]:
        """What the broker going away (or refusing a message) raises through its client, kombu and
        Celery; `transient_only`: only what is worth trying again after (a lost connection)."""
        ...

    def all_or_nothing(self, app: Celery) -> AbstractContextManager[None]:
        """Within: what this thread publishes through `app` is held back, and reaches the broker on a
        clean exit all at once — or, should the broker fail, none of it."""
        ...

    def server_command(self, directory: Path) -> tuple[list[str], str]:
        """How to run a private server of this broker, keeping its files in `directory` and reachable
        by this user only: (its command line, the URL it answers on). Raise RuntimeError (one line,
        saying what to install) if there is no server to run here."""
        ...


#: Every broker module (mypy checks each against `Broker` here).
_MODULES: tuple[Broker, ...] = (redis, rabbitmq)

#: Every broker, by URL scheme.
BROKERS: dict[str, Broker] = {scheme: module for module in _MODULES for scheme in module.SCHEMES}

#: The broker `conquer` starts for itself when none is configured (`workers.celery.localstack`).
EMBEDDED: Broker = redis


def for_url(url: str) -> Broker:
    """The broker of `url` (whose scheme Settings checked: KeyError otherwise)."""
    return BROKERS[url.partition("://")[0]]
