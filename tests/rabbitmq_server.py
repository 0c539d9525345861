"""A RabbitMQ node of the tests' own, which a drill may stop and start; and a Celery stack on it.

The node is the product's (`workers.celery.brokers.rabbitmq_node`: its own name, ports, data, cookie,
user and epmd; start, stop, restart, close, and why it takes 5-12 s to start): here, one node for the
whole session (`rabbitmq_stack`), and one per drill module. Nothing on the shared RabbitMQ
(127.0.0.1:5672) is touched; `leftovers` says if a node's process outlived its `close`.

Where `rabbitmq-server` is not installed, the tests that need a node are skipped with one line.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import SESSION_PROCESSES, STACK_NODES, Stack, skip_without_redis_server
from tests.redis_server import RedisServer, redis_server
from workers.celery.brokers import rabbitmq
from workers.celery.brokers.rabbitmq_node import START_DEADLINE_S, RabbitMQNode
from workers.celery.brokers.rabbitmq_node import leftovers as node_leftovers
from workers.celery.brokers.rabbitmq_node import rabbitmq_node as product_node

if TYPE_CHECKING:
    from workers.celery.settings import Settings


def skip_without_rabbitmq() -> None:
    """Skip the calling test, in one line, where no RabbitMQ node can be started here."""
    try:
        rabbitmq.server_binary()
    except RuntimeError as error:
        pytest.skip(f"private RabbitMQ: {error}")


@contextmanager
def rabbitmq_node(directory: Path, *, started: bool = True) -> Iterator[RabbitMQNode]:
    """A private RabbitMQ node in `directory` (`workers.celery.brokers.rabbitmq_node`), closed on the
    way out whatever happened; the test is skipped, in one line, where none can run."""
    skip_without_rabbitmq()
    with product_node(directory, started=started) as node:
        yield node


def leftovers(node: RabbitMQNode, pids: set[int]) -> list[str]:
    """Which of the node's former `pids` still run (zombies are gone: their status is only owed)."""
    return node_leftovers(pids)


@dataclass(frozen=True)
class RabbitMQStack:
    """The session's RabbitMQ stack: the node, the Redis result backend's URL, and the usual `Stack`."""

    node: RabbitMQNode
    backend: str
    stack: Stack = field(repr=False)  # its env holds the broker URL, password included


@contextmanager
def socket_redis(directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A Redis on a Unix socket in `directory`, as the embedded stack runs it (`server_command`): no
    TCP port, so a test that looks for its own server among this process's listening children
    (tests/workers/test_managers.py) cannot take it for one."""
    from workers.celery.brokers import redis

    command, url = redis.server_command(directory)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                redis.ping(url, timeout=1)
                break
            except redis.errors(transient_only=True):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the result backend's Redis did not start") from None
                time.sleep(0.02)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def rabbitmq_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQStack]:
    """STACK_NODES workers (one pool process each) on a private RabbitMQ node, with a private Redis as
    the result backend; for the whole session, like `celery_stack`."""
    skip_without_rabbitmq()
    skip_without_redis_server()
    from workers.celery.brokers.redis import redis_client
    from workers.celery.client import Client
    from workers.celery.localstack import local_stack
    from workers.celery.settings import Settings

    with (
        rabbitmq_node(tmp_path_factory.mktemp("rabbitmq")) as node,
        socket_redis(tmp_path_factory.mktemp("rabbitmq-backend")) as (backend, backend_url),
    ):
        own = node.pids() | {backend.pid}
        SESSION_PROCESSES.update(own)
        settings = Settings(
            broker_url=node.url,
            broker_configured=True,
            result_backend=backend_url,
            key_prefix=f"conquer-amqp-{secrets.token_hex(4)}",
            worker_concurrency=1,
        )
        with local_stack(settings, workers=STACK_NODES) as stack:
            workers = {process.pid for process in stack.processes}
            SESSION_PROCESSES.update(workers)
            client = Client(stack.app, stack.settings)
            connection = redis_client(stack.settings.result_backend)
            try:
                yield RabbitMQStack(
                    node, backend_url, Stack(stack, client, connection, stack.settings.to_env())
                )
            finally:
                connection.close()
                SESSION_PROCESSES.difference_update(workers | own)


# ---------------------------------------------------------------------------- for the drills


@dataclass
class DrillBroker:
    """A private RabbitMQ node and a private Redis result backend, for drill stacks to run on (one
    stack at a time: workers on one node share its queue)."""

    node: RabbitMQNode
    backend: RedisServer
    #: The pids registered in SESSION_PROCESSES (`drill_broker(kept=True)`), kept in step by `restart`.
    kept: set[int] = field(default_factory=set)

    def restart(self, *, crash: bool = False) -> None:
        """Stop the node (SIGTERM, or SIGKILL with `crash`) and start it again on the same data."""
        self.node.restart(crash=crash)
        forget_pools(self.node)
        if self.kept:
            SESSION_PROCESSES.difference_update(self.kept)
            self.kept = self.node.pids() | ({self.backend.process.pid} if self.backend.process else set())
            SESSION_PROCESSES.update(self.kept)

    def settings(self, **overrides: object) -> Settings:
        """One pool process per worker, a key prefix of its own in the backend, no task events."""
        from workers.celery.settings import Settings

        fields: dict[str, Any] = {
            "key_prefix": f"drill-{secrets.token_hex(4)}",
            "worker_concurrency": 1,
            "task_events": False,
            **overrides,
        }
        return Settings(
            broker_url=self.node.url, broker_configured=True, result_backend=self.backend.url, **fields
        )


def forget_pools(node: RabbitMQNode) -> None:
    """Drop kombu's process-wide pools of connections to `node` (`conquer.hosts_celery.forget_pools`):
    after a restart they are dead, and the next stack's `ping` would write to one. A process that
    outlives a broker restart is a test's doing: `conquer` commands are short-lived."""
    from conquer.hosts_celery import forget_pools as forget

    forget(node.url)


@contextmanager
def drill_broker(directory: Path, *, kept: bool) -> Iterator[DrillBroker]:
    """A node and a backend in `directory`, closed on the way out; `kept`: their processes outlive
    each test of a module (see `no_leftovers` in tests/conftest.py), as for a module-scoped fixture."""
    skip_without_rabbitmq()
    skip_without_redis_server()
    (directory / "node").mkdir()
    (directory / "backend").mkdir()
    with rabbitmq_node(directory / "node") as node, redis_server(directory / "backend") as backend:
        found = DrillBroker(node, backend)
        if kept:
            found.kept = node.pids() | ({backend.process.pid} if backend.process else set())
            SESSION_PROCESSES.update(found.kept)
        try:
            yield found
        finally:
            SESSION_PROCESSES.difference_update(found.kept)


def queue_depth(node: RabbitMQNode, queue: str = "conquer") -> int:
    """Messages ready in `queue` on `node` (not those delivered and unacknowledged). Takes the node,
    not its URL, so that a failing assertion does not print the password."""
    from kombu import Connection

    with Connection(node.url, connect_timeout=3) as connection:
        channel: Any = connection.default_channel
        try:
            _, messages, _ = channel.queue_declare(queue=queue, passive=True)
        except rabbitmq.errors():
            return 0  # no such queue (yet): nothing in it
        return int(messages)
