"""How the Celery side is configured: one frozen `Settings`, read from the environment once.

Every process of the stack — `celery -A tasks worker`, Flower, `conquer submit` and the `celery`
executor — builds the same `Settings` from the same variables, so they agree on the broker, the key
prefix and the time limits. Nothing here imports Celery.

| variable | default | meaning |
|---|---|---|
| CELERY_BROKER_URL | redis://localhost:6379/0 | the broker: `redis[s]://`, `redis+socket://`, `amqp[s]://` |
| CELERY_BROKER_URL_FILE | (none) | a file holding that URL instead, so the password is in no environment |
| CELERY_RESULT_BACKEND | the Redis broker URL | results, chord counters, progress (Redis; needed with amqp) |
| CELERY_RESULT_BACKEND_FILE | (none) | a file holding that URL instead (compose's RabbitMQ workers use it) |
| CONQUER_BROKER_CA_FILE | (none) | amqps:// only: a CA certificate (PEM) to trust besides the system's |
| CONQUER_KEY_PREFIX | (none) | prefix of every Redis key and channel, so stacks can share one Redis |
| CONQUER_WORKER_CONCURRENCY | the cores here | pool processes per `celery worker` |
| CONQUER_WORKER_POOL | prefork | Celery pool: prefork (processes), threads, or solo (the worker itself) |
| CONQUER_VISIBILITY_TIMEOUT | 20 | seconds before an unacknowledged chunk is given to another worker |
| CONQUER_CHUNK_TIME_LIMIT | 15; amqp: 1500 | seconds a chunk may run before it fails (soft; hard = +3 s) |
| CONQUER_RESULT_EXPIRES | 86400 | seconds results and job progress are kept in Redis |
| CONQUER_TASK_EVENTS | 1 | workers send task events (what Flower shows); 0 saves their cost |
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from workers.celery import brokers
from workers.celery.brokers import redis

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_VISIBILITY_TIMEOUT_S = 20
DEFAULT_CHUNK_TIME_LIMIT_S = redis.CHUNK_TIME_LIMIT_S
DEFAULT_RESULT_EXPIRES_S = 86_400
POOLS = ("prefork", "threads", "solo")

#: The hard time limit is this much longer than the soft one: the soft limit raises inside the chunk
#: (which then fails cleanly); the hard limit kills a pool process stuck where no exception reaches it.
HARD_LIMIT_MARGIN_S = 3

#: Names of the variables, as the README and error messages spell them.
ENV_BROKER = "CELERY_BROKER_URL"
ENV_BROKER_FILE = "CELERY_BROKER_URL_FILE"
ENV_BACKEND_FILE = "CELERY_RESULT_BACKEND_FILE"
ENV_BACKEND = "CELERY_RESULT_BACKEND"
ENV_BROKER_CA_FILE = "CONQUER_BROKER_CA_FILE"
ENV_PREFIX = "CONQUER_KEY_PREFIX"
ENV_CONCURRENCY = "CONQUER_WORKER_CONCURRENCY"
ENV_POOL = "CONQUER_WORKER_POOL"
ENV_VISIBILITY = "CONQUER_VISIBILITY_TIMEOUT"
ENV_TIME_LIMIT = "CONQUER_CHUNK_TIME_LIMIT"
ENV_EXPIRES = "CONQUER_RESULT_EXPIRES"
ENV_EVENTS = "CONQUER_TASK_EVENTS"


#: The result backends, by URL scheme: Redis only, whatever the broker.
RESULT_BACKENDS: dict[str, brokers.Broker] = dict.fromkeys(redis.SCHEMES, redis)


class SettingsError(ValueError):
    """An environment variable has a value that cannot work (the message names it)."""


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    #: False when CELERY_BROKER_URL is unset: `conquer run --on celery` then starts its own Redis.
    broker_configured: bool = False
    result_backend: str = DEFAULT_BROKER_URL
    #: A CA certificate file to trust for an amqps:// broker (its server's certificate must be signed
    #: by it or by a CA of the system's); '' for the system's only.
    broker_ca_file: str = ""
    key_prefix: str = ""
    worker_concurrency: int = 1
    worker_pool: str = "prefork"
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT_S
    chunk_time_limit: int = DEFAULT_CHUNK_TIME_LIMIT_S
    #: Whether CONQUER_CHUNK_TIME_LIMIT chose the limit; if not, it is the broker's default and follows
    #: the broker when the settings move to another one (`on_broker`).
    chunk_time_limit_chosen: bool = False
    result_expires: int = DEFAULT_RESULT_EXPIRES_S
    #: Task events are what Flower shows; without a monitor they are two extra messages per chunk.
    task_events: bool = True

    def __post_init__(self) -> None:
        _check_url(ENV_BROKER, self.broker_url, brokers.BROKERS)
        # The result backend is Redis whatever the broker: the chord's counters and the job store.
        _check_url(ENV_BACKEND, self.result_backend, RESULT_BACKENDS)
        if self.broker_ca_file:
            _check_ca_file(self.broker_url, self.broker_ca_file)
        if not re.fullmatch(r"[\w.:-]*", self.key_prefix):
            raise SettingsError(f"{ENV_PREFIX} may hold only letters, digits and . : _ -")
        if self.worker_pool not in POOLS:
            raise SettingsError(f"{ENV_POOL} must be one of {', '.join(POOLS)}, got {self.worker_pool!r}")
        for name, value, low in (
            (ENV_CONCURRENCY, self.worker_concurrency, 1),
            (ENV_TIME_LIMIT, self.chunk_time_limit, 1),
            (ENV_EXPIRES, self.result_expires, 60),
        ):
            if value < low:
                raise SettingsError(f"{name} must be at least {low}, got {value}")
        broker = brokers.for_url(self.broker_url)
        if broker.REDELIVERS_AFTER_TIMEOUT and self.hard_time_limit >= self.visibility_timeout:
            # A chunk still running when its visibility timeout passes is handed to a second worker,
            # and that copy to a third: each run would be redelivered before it could finish. Only
            # where the broker has no acknowledgements (Redis); RabbitMQ requeues on a closed
            # connection, so the visibility timeout means nothing there and this limit is lifted.
            raise SettingsError(
                f"{ENV_VISIBILITY} ({self.visibility_timeout} s) must exceed the chunk hard time limit "
                f"({ENV_TIME_LIMIT} + {HARD_LIMIT_MARGIN_S} = {self.hard_time_limit} s)"
            )
        if broker.CONSUMER_TIMEOUT_S is not None and self.hard_time_limit >= broker.CONSUMER_TIMEOUT_S:
            # The broker takes back a delivery unacknowledged that long (RabbitMQ's consumer_timeout):
            # a chunk still running would run again elsewhere.
            raise SettingsError(
                f"the chunk hard time limit ({ENV_TIME_LIMIT} + {HARD_LIMIT_MARGIN_S} = "
                f"{self.hard_time_limit} s) must stay below {broker.NAME}'s consumer_timeout "
                f"({broker.CONSUMER_TIMEOUT_S} s by default)"
            )

    @property
    def hard_time_limit(self) -> int:
        return self.chunk_time_limit + HARD_LIMIT_MARGIN_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        broker = _url(env, ENV_BROKER, ENV_BROKER_FILE)
        backend = _url(env, ENV_BACKEND, ENV_BACKEND_FILE)
        scheme = (broker or DEFAULT_BROKER_URL).partition("://")[0]
        if broker and not backend and scheme in brokers.BROKERS and scheme not in RESULT_BACKENDS:
            # Results, chord counters and job progress live in Redis whatever the broker: a RabbitMQ
            # URL cannot stand in for the result backend as a Redis one does.
            raise SettingsError(
                f"{ENV_BROKER} is a {brokers.BROKERS[scheme].NAME} URL: set {ENV_BACKEND} to a Redis URL "
                "too (results and job progress are kept in Redis whatever the broker)"
            )
        # The chunk time limit's default is the broker's (unknown scheme: refused in __post_init__).
        chunk_limit = brokers.BROKERS.get(scheme, redis).CHUNK_TIME_LIMIT_S
        return cls(
            broker_url=broker or DEFAULT_BROKER_URL,
            broker_configured=bool(broker),
            result_backend=backend or broker or DEFAULT_BROKER_URL,
            broker_ca_file=env.get(ENV_BROKER_CA_FILE, "").strip(),
            key_prefix=env.get(ENV_PREFIX, "").strip(),
            worker_concurrency=_integer(env, ENV_CONCURRENCY, len(os.sched_getaffinity(0))),
            worker_pool=env.get(ENV_POOL, "").strip() or "prefork",
            visibility_timeout=_integer(env, ENV_VISIBILITY, DEFAULT_VISIBILITY_TIMEOUT_S),
            chunk_time_limit=_integer(env, ENV_TIME_LIMIT, chunk_limit),
            chunk_time_limit_chosen=bool(env.get(ENV_TIME_LIMIT, "").strip()),
            result_expires=_integer(env, ENV_EXPIRES, DEFAULT_RESULT_EXPIRES_S),
            task_events=_flag(env, ENV_EVENTS, default=True),
        )

    def with_broker(self, url: str) -> Settings:
        """These settings pointed at another Redis (broker and results both), e.g. an embedded one."""
        return dataclasses.replace(self, broker_url=url, result_backend=url, broker_configured=True)

    def on_broker(self, url: str) -> Settings:
        """These settings with `url` as the broker (the results stay where they are): a chunk time
        limit nobody chose becomes the new broker's default — RabbitMQ's needs no room for a
        visibility timeout."""
        limit = self.chunk_time_limit
        if not self.chunk_time_limit_chosen:
            limit = brokers.for_url(url).CHUNK_TIME_LIMIT_S
        return dataclasses.replace(self, broker_url=url, broker_configured=True, chunk_time_limit=limit)

    def to_env(self) -> dict[str, str]:
        """The variables that rebuild these settings in another process (a worker we start)."""
        return {
            ENV_BROKER: self.broker_url,
            ENV_BACKEND: self.result_backend,
            ENV_BROKER_CA_FILE: self.broker_ca_file,
            ENV_PREFIX: self.key_prefix,
            ENV_CONCURRENCY: str(self.worker_concurrency),
            ENV_POOL: self.worker_pool,
            ENV_VISIBILITY: str(self.visibility_timeout),
            ENV_TIME_LIMIT: str(self.chunk_time_limit),
            ENV_EXPIRES: str(self.result_expires),
            ENV_EVENTS: "1" if self.task_events else "0",
        }


def _check_url(name: str, url: str, servers: Mapping[str, brokers.Broker]) -> None:
    """Refuse `url` (variable `name`) unless its scheme is one of `servers`' and that server takes it."""
    scheme, separator, _ = url.partition("://")
    server = servers.get(scheme) if separator else None
    if server is None:
        names = " or ".join(dict.fromkeys(each.NAME for each in servers.values()))
        schemes = ", ".join(each + "://" for each in servers)
        raise SettingsError(f"{name} must be a {names} URL ({schemes}), got {mask(url)!r}")
    try:
        server.check_url(url)
    except ValueError as error:
        raise SettingsError(f"{name} is {mask(url)!r}: {error}") from None


def _check_ca_file(broker_url: str, path: str) -> None:
    """Refuse a CA file for a broker that does not speak TLS through py-amqp, or one that cannot be
    read (a missing file would otherwise surface as a TLS error at the first connection)."""
    if not broker_url.startswith("amqps://"):
        raise SettingsError(f"{ENV_BROKER_CA_FILE} applies only to an amqps:// broker (RabbitMQ over TLS)")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise SettingsError(f"{ENV_BROKER_CA_FILE}: cannot read {path} ({error.strerror})") from None


def _url(env: Mapping[str, str], name: str, file_name: str) -> str:
    """The URL in the variable `name`, or in the file that `file_name` names (the Docker `*_FILE`
    convention: compose's secrets volume), or ''."""
    url = env.get(name, "").strip()
    path = env.get(file_name, "").strip()
    if not path:
        return url
    if url:
        raise SettingsError(f"set {name} or {file_name}, not both")
    url = _secret_file(file_name, path)
    if "://" not in url:  # checked here, where the message can name the file, not print it
        raise SettingsError(f"{file_name}: {path} does not hold a URL (redis://...)")
    return url


def _secret_file(name: str, path: str) -> str:
    """The value kept in the file at `path` (the Docker `*_FILE` convention: compose's secrets
    volume), without its trailing newline. Errors name the file, never what it holds."""
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise SettingsError(f"{name}: cannot read {path} ({reason})") from None
    if not value:
        raise SettingsError(f"{name}: {path} is empty")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {text!r}") from None


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {text!r}")


#: A password given as a query parameter (redis-py reads `?password=...`).
PASSWORD_PARAMETER = re.compile(r"([?&;]password=)[^&;#]*", re.IGNORECASE)


def mask(url: str) -> str:
    """`url` with its password replaced by `***` — the only form in which a URL is ever printed.

    Masked on the text, not on a parse: a password that was not percent-encoded (`redis://:p#ss@host`)
    makes a URL parser see no password at all (`#` starts a fragment), and must not be printed either.
    So everything after the user name up to the last `@` is hidden (more than the password, in a URL
    with an `@` in its query: harmless), and so is a `password=` query parameter.
    """
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{location}"
    return head + separator + PASSWORD_PARAMETER.sub(r"\1***", rest)


@cache
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()
