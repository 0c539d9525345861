"""RabbitMQ as the broker (issue 12): what is RabbitMQ-specific about carrying the chunk messages.

Its URLs (`amqp://`, `amqps://`, checked before anything connects), the Celery settings it needs (a
short heartbeat, classic durable queues), what py-amqp and kombu raise when it goes away, a job sent
in one AMQP transaction, and a private RabbitMQ node for the tests and the drills that stop a broker.
Implements `workers.celery.brokers.Broker`. The result backend stays Redis (`brokers.redis`).

RabbitMQ acknowledges for real: a delivery a consumer has not acknowledged goes back to the queue the
moment its channel or connection closes — a SIGKILLed worker's chunk runs again on another worker at
once (measured here: 0.012 s after the kill), where Redis waits for its visibility timeout. So nothing
bounds a chunk's run time on RabbitMQ but RabbitMQ's own `consumer_timeout` (CONSUMER_TIMEOUT_S).

Nothing here loads py-amqp, kombu or Celery until a function needs it: Settings checks URLs with it.

Usage::

    CELERY_BROKER_URL=amqp://user:password@host:5672/vhost CELERY_RESULT_BACKEND=redis://host:6379/0 \
        conquer submit sum 1e8 --wait
"""

from __future__ import annotations

import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from celery import Celery

    from workers.celery.settings import Settings

NAME = "RabbitMQ"
SCHEMES: tuple[str, ...] = ("amqp", "amqps")

#: Real acknowledgements: an unacknowledged delivery is requeued when its consumer's connection
#: closes, not after a timeout — no visibility timeout bounds a chunk's run time here.
REDELIVERS_AFTER_TIMEOUT = False

#: RabbitMQ's `consumer_timeout` (default 30 min since 3.8.15): a channel holding a delivery
#: unacknowledged for longer is closed by the broker (PRECONDITION_FAILED) and the delivery requeued —
#: a chunk still running then would run a second time elsewhere. So the chunk hard time limit must stay
#: below it (Settings checks); a server configured with another value needs CONQUER_CHUNK_TIME_LIMIT
#: set below that one.
CONSUMER_TIMEOUT_S: int | None = 1800

#: The chunk time limit when CONQUER_CHUNK_TIME_LIMIT is unset: 25 min soft (hard 3 s later), five
#: minutes under the consumer timeout (RabbitMQ checks it about once a minute). Redis's 15 s exists only
#: because of its 20 s visibility timeout; here a long `download` chunk is not refused.
CHUNK_TIME_LIMIT_S = 1500

#: Seconds between AMQP heartbeats. RabbitMQ declares a peer dead after two missed beats, so a worker
#: host that vanishes without closing its TCP connection (power loss, a cut link) is noticed and its
#: chunk requeued in about 10.8-13 s (measured here) — within issue 12's 30 s. Celery's default, 120 s,
#: would take four minutes. The cost: a few bytes per connection every 2.5 s.
HEARTBEAT_S = 5

#: Connect timeout for a client or a ping: an unreachable broker is one line within seconds.
CONNECT_TIMEOUT_S = 3


def check_url(url: str) -> None:
    """Raise ValueError if `url` (an AMQP URL by its scheme) has a port that is not a number or out of
    range, or kombu's `ssl_*` options in its query: kombu would fail with a traceback-worthy error only
    when it connects."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("its port must be a number from 1 to 65535")
    if any(name.startswith("ssl_") for name in parse_qs(urlsplit(url).query)):
        # kombu would hand them to py-amqp as unknown keywords: a TypeError at the first connection.
        raise ValueError("TLS options cannot go in its query: set CONQUER_BROKER_CA_FILE for a CA to trust")


def tls_options(url: str, ca_file: str = "") -> dict[str, Any] | None:
    """py-amqp's TLS options for `url` (None for plain amqp://): the server's certificate must be
    signed by a CA trusted here — the system's, or `ca_file`'s (CONQUER_BROKER_CA_FILE) — and name the
    URL's host (kombu fills `server_hostname` in). Given only `amqps://`, py-amqp checks no host name.

    Not in the URL's query: kombu hands a `?ssl_ca_certs=` to py-amqp unchanged, where it is an unknown
    keyword, and Celery reads CELERY_BROKER_URL itself, so conquer could not take it out."""
    if not url.startswith("amqps://"):
        return None
    import ssl

    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": ca_file or None, "server_hostname": None}


def config(settings: Settings) -> dict[str, Any]:
    """The Celery settings a RabbitMQ broker needs beyond its URL."""
    tls = tls_options(settings.broker_url, settings.broker_ca_file)
    return {
        "broker_heartbeat": HEARTBEAT_S,
        # Classic durable queues, not quorum (measured here; docs/celery.md says what quorum would
        # change): a classic queue keeps the global QoS that prefetch 1 relies on, and needs one node.
        "task_default_queue_type": "classic",
        # Never publisher confirms on the workers: measured here, they blocked a worker's publishes
        # (the chord's combine, remote-control replies) for as long as a partition lasted. A client
        # sends a job in a transaction instead (`all_or_nothing`).
        "broker_transport_options": {"confirm_publish": False},
        **({"broker_use_ssl": tls} if tls else {}),
    }


def ping(url: str, timeout: float, *, ca_file: str = "") -> None:
    """Open an AMQP connection (handshake, TLS and login included) and close it; one try, no retry
    loop. `ca_file`: as in `tls_options`."""
    from kombu import Connection

    tls = tls_options(url, ca_file)
    with Connection(
        url, connect_timeout=min(timeout, CONNECT_TIMEOUT_S), heartbeat=0, ssl=tls or False
    ) as connection:
        connection.ensure_connection(max_retries=0)  # one try: no retry loop


def errors(*, transient_only: bool = False) -> tuple[type[Exception], ...]:
    """What a RabbitMQ going away (or refusing a message) raises through py-amqp, kombu and Celery.

    transient_only: only what is worth asking again after (a lost or refused connection, a timeout),
    not a login or a command RabbitMQ refused."""
    from amqp.exceptions import AMQPError, RecoverableChannelError, RecoverableConnectionError
    from kombu.exceptions import KombuError, OperationalError

    if transient_only:
        # socket.timeout and ConnectionRefusedError are OSErrors.
        return (RecoverableConnectionError, RecoverableChannelError, OperationalError, OSError)
    return (AMQPError, KombuError, OSError)


def all_or_nothing(app: Celery) -> AbstractContextManager[None]:
    """The job's messages published in one AMQP transaction on a channel of their own."""
    return _transaction(app)


@contextmanager
def _transaction(app: Celery) -> Iterator[None]:
    """Within: this thread's publishes through `app` go to a fresh channel in transaction mode
    (`tx.select`), and reach the queue on `tx.commit` at a clean exit; on an error, or a connection
    lost before the commit, none of them does (RabbitMQ discards an uncommitted transaction).

    What can still be half-sent: RabbitMQ promises no atomicity, even in one queue, for a commit it is
    in the middle of when it crashes (its "Broker Semantics" page): part of the job may then be
    queued, and the client, which gets no commit-ok, marks the job failed and cancelled
    (`Client._abandon`), so the chunks that were queued skip themselves. The same as on Redis when
    EXEC's reply is lost.
    """
    from workers.celery import kombu_fixes

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0)  # one try: the client reports, never waits
        channel: Any = connection.channel()  # py-amqp's Channel: kombu's stubs lack tx_*
        try:
            channel.tx_select()
            producer = _transaction_producer(app)(channel)
            with kombu_fixes.holding(app, producer):
                yield
            channel.tx_commit()
        finally:
            with suppress(*errors()):
                channel.close()  # an uncommitted transaction dies with its channel


def _transaction_producer(app: Celery) -> Any:
    """`app`'s Producer class, never retrying a publish. A retry reconnects and gives the producer a
    fresh channel — one not in transaction mode, whose publishes would reach the queue at once: part
    of the job sent while the rest is not. Failing instead leaves the whole transaction uncommitted."""
    base = app.amqp.Producer

    class TransactionProducer(base):  # type: ignore[misc,valid-type]
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["retry"] = False
            return super().publish(*args, **kwargs)

    return TransactionProducer


# ------------------------------------------------------------------------- a private RabbitMQ node

#: Where Debian's package keeps the real scripts: its /usr/sbin/rabbitmq-server is a wrapper that, run
#: as root, switches to the `rabbitmq` user and the system node's settings.
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")

#: The user of the private node (the password is random per node).
NODE_USER = "conquer"


def server_binary() -> str:
    """The rabbitmq-server script to run: Debian's real one, else one on PATH."""
    debian = DEBIAN_SCRIPTS / "rabbitmq-server"
    if debian.is_file():
        return str(debian)
    found = shutil.which("rabbitmq-server")
    if found:
        return found
    raise RuntimeError("no RabbitMQ server: install rabbitmq-server, or point CELERY_BROKER_URL at one")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(directory: Path, tls: tuple[Path, Path, Path] | None = None) -> tuple[list[str], str]:
    """A private RabbitMQ node whose every file is in `directory` (mode 0700: this user's only).

    With `tls` (the CA certificate, the server's certificate and its key, PEM files), the node also
    takes AMQP over TLS (`amqps://`) on a port of its own, written as `listeners.ssl.default` in
    `directory`/rabbitmq.conf; it asks clients for no certificate. The URL returned stays the plain
    listener's.

    Its own node name, AMQP port, distribution port and epmd port (`ERL_EPMD_PORT`: it starts an epmd
    of its own, which whoever stops the node must end too — it daemonizes out of the node's process
    group; the system's epmd and node are never touched), no plugins (no
    management listener), every listener on 127.0.0.1, its own Erlang cookie (HOME is `directory`),
    and a user of its own with a random password in its config file (not on the command line).
    Started under `setsid`, so that its whole process group can be signalled at once."""
    port, dist_port, epmd_port = _free_port(), _free_port(), _free_port()
    password = secrets.token_hex(16)
    node = f"conquer-{secrets.token_hex(4)}@localhost"
    (directory / ".erlang.cookie").write_text(secrets.token_hex(20))
    (directory / ".erlang.cookie").chmod(0o400)
    (directory / "enabled_plugins").write_text("[].\n")
    tls_lines = []
    if tls:
        ca, certificate, key = tls
        tls_lines = [
            f"listeners.ssl.default = 127.0.0.1:{_free_port()}",
            f"ssl_options.cacertfile = {ca}",
            f"ssl_options.certfile = {certificate}",
            f"ssl_options.keyfile = {key}",
            # The server proves who it is; clients log in with a password, not a certificate.
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]
    config = directory / "rabbitmq.conf"
    config.write_text(
        "\n".join(
            [
                f"listeners.tcp.1 = 127.0.0.1:{port}",
                f"default_user = {NODE_USER}",
                f"default_pass = {password}",
                f"loopback_users.{NODE_USER} = true",  # refused from anywhere but this machine
                "log.console = false",
                *tls_lines,
                "",
            ]
        )
    )
    config.chmod(0o600)
    # Read by the server script instead of the system's /etc/rabbitmq/rabbitmq-env.conf.
    (directory / "rabbitmq-env.conf").write_text(
        "\n".join(
            [
                f"NODENAME={node}",
                f"NODE_PORT={port}",
                f"DIST_PORT={dist_port}",
                f"MNESIA_BASE={directory / 'mnesia'}",
                f"LOG_BASE={directory / 'log'}",
                f"CONFIG_FILE={config}",
                f"ENABLED_PLUGINS_FILE={directory / 'enabled_plugins'}",
                f"ADVANCED_CONFIG_FILE={directory / 'advanced.config'}",
                f"PID_FILE={directory / 'node.pid'}",
                "SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'",
                f"export ERL_EPMD_PORT={epmd_port}",
                "export ERL_EPMD_ADDRESS=127.0.0.1",
                "",
            ]
        )
    )
    command = [
        "setsid",
        "env",
        f"HOME={directory}",
        f"RABBITMQ_CONF_ENV_FILE={directory / 'rabbitmq-env.conf'}",
        server_binary(),
    ]
    return command, f"amqp://{NODE_USER}:{password}@127.0.0.1:{port}//"


def epmd_port(directory: Path) -> int:
    """The epmd port of the node `server_command` set up in `directory`."""
    for line in (directory / "rabbitmq-env.conf").read_text().splitlines():
        if line.startswith("export ERL_EPMD_PORT="):
            return int(line.rpartition("=")[2])
    raise RuntimeError(f"no private epmd port in {directory}")
