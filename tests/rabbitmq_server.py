"""A RabbitMQ node of the tests' own, which a drill may stop and start; and a Celery stack on it.

Nothing on the shared RabbitMQ (127.0.0.1:5672) is touched: each node is a second `rabbitmq-server`
with its own name, ports, data, logs, Erlang cookie, user and epmd, all in a 0700 directory
(`workers.celery.brokers.rabbitmq.server_command`). Its processes — the server script, the Erlang VM
and the helpers it forks, and the epmd it starts, which daemonizes and becomes this (subreaper)
process's child — are all stopped by `close`, and `leftovers` says if any is not.

Measured start, process started -> AMQP login accepted: 6.8-11.5 s on the 2-core VM at load 3-10
(the Erlang VM boots, then RabbitMQ's own boot steps take about 5 s); a restart on the same data,
stop included, 4.9-11.3 s. Hence one node for the whole session (`rabbitmq_stack`), and one per
drill module.

Where `rabbitmq-server` is not installed, the tests that need a node are skipped with one line.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.conftest import SESSION_PROCESSES, STACK_NODES, Stack, skip_without_redis_server
from tests.redis_server import RedisServer, redis_server
from workers.celery.brokers import rabbitmq

if TYPE_CHECKING:
    from workers.celery.settings import Settings

#: How long a starting node may take to accept a login: five times the 6.8-11.5 s measured.
START_DEADLINE_S = 60
#: How long a node gets to stop cleanly (SIGTERM: RabbitMQ's own shutdown) before SIGKILL.
STOP_GRACE_S = 15


#: Runs the node's command as a child subreaper that also gets SIGTERM should this process die
#: (prctl, Linux; both settings survive exec): every minute RabbitMQ re-checks its epmd by starting an
#: `erl`, which starts an `epmd -daemon` that exits at once (the port is taken) — orphans that would
#: otherwise be reparented to pytest (a subreaper itself, tests/conftest.py) and, on a loaded machine,
#: be seen alive by the leftover check. Reparented to the node's own script instead, they are reaped
#: there, inside the node's session. And a test run killed outright stops its nodes (the script traps
#: SIGTERM and stops RabbitMQ) instead of leaving them running.
SUBREAPER = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
os.execvp(sys.argv[1], sys.argv[1:])
"""


def skip_without_rabbitmq() -> None:
    """Skip the calling test, in one line, where no RabbitMQ node can be started here."""
    try:
        rabbitmq.server_binary()
    except RuntimeError as error:
        pytest.skip(f"private RabbitMQ: {error}")


@dataclass
class RabbitMQNode:
    directory: Path
    command: list[str]
    url: str = field(repr=False)  # holds the node's password
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: Seconds the last start took, process started -> login accepted.
    start_s: float = 0.0

    def start(self) -> None:
        """Start the node (again, on the same ports and data) and wait until it accepts a login."""
        began = time.monotonic()
        with (self.directory / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SUBREAPER, *self.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = began + START_DEADLINE_S
        while True:
            try:
                rabbitmq.ping(self.url, timeout=2)
                break
            except rabbitmq.errors():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"private RabbitMQ did not start: {self.log_tail()}") from None
                time.sleep(0.1)
        self.start_s = time.monotonic() - began

    def node_processes(self) -> list[psutil.Process]:
        """The node's processes: its session (the script and the Erlang VM; `setsid` made the
        script's pid the session id) and the VM's helpers (erl_child_setup, inet_gethost)."""
        if self.process is None:
            return []
        found = []
        for process in psutil.process_iter():
            with suppress(psutil.Error, ProcessLookupError):
                if os.getsid(process.pid) == self.process.pid:
                    found.append(process)
                    found.extend(process.children(recursive=True))
        return list({process.pid: process for process in found}.values())

    def epmd(self) -> list[psutil.Process]:
        """The epmd this node started (on its private port), if it runs."""
        port = str(rabbitmq.epmd_port(self.directory))
        found = []
        for process in psutil.process_iter(["name"]):
            with suppress(psutil.Error):
                if process.info["name"] == "epmd" and process.environ().get("ERL_EPMD_PORT") == port:
                    found.append(process)
        return found

    def pids(self) -> set[int]:
        return {process.pid for process in (*self.node_processes(), *self.epmd())}

    def stop(self, *, crash: bool = False) -> None:
        """Stop the node: SIGTERM to its group (RabbitMQ shuts down cleanly), SIGKILL after the grace;
        with `crash`, SIGKILL at once. Its epmd stays (the next start uses it; `close` ends it)."""
        if self.process is None:
            return
        processes = self.node_processes()
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=0 if crash else STOP_GRACE_S)
        for process in alive:
            with suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, crash: bool = False) -> None:
        self.stop(crash=crash)
        self.start()

    def close(self) -> None:
        """Stop the node and its epmd; reap the epmd (this process is its subreaper)."""
        self.stop()
        daemons = self.epmd()
        for process in daemons:
            with suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(daemons, timeout=5)
        for process in alive:
            with suppress(psutil.Error):
                process.kill()
        for process in daemons:
            with suppress(ChildProcessError, OSError):
                os.waitpid(process.pid, os.WNOHANG)

    def log_tail(self, lines: int = 5) -> str:
        logs = sorted((self.directory / "log").glob("*.log")) or [self.directory / "server.out"]
        text = logs[0].read_text(errors="replace").splitlines() if logs[0].exists() else []
        return " | ".join(text[-lines:]) or "(no log)"


@contextmanager
def rabbitmq_node(directory: Path, *, started: bool = True) -> Iterator[RabbitMQNode]:
    """A private RabbitMQ node in `directory` (made 0700), closed on the way out whatever happened."""
    skip_without_rabbitmq()
    directory.chmod(0o700)
    command, url = rabbitmq.server_command(directory)
    node = RabbitMQNode(directory, command, url)
    try:
        if started:
            node.start()
        yield node
    finally:
        node.close()


def leftovers(node: RabbitMQNode, pids: set[int]) -> list[str]:
    """Which of the node's former `pids` still run (zombies are gone: their status is only owed)."""
    left = []
    for pid in pids:
        with suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {process.name()}")
    return left


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
    """Close and drop kombu's process-wide pools of connections to `node` (and only those: the
    session's Redis stack holds on to its own).

    kombu keeps producer and connection pools per broker connection for the whole process (remote
    control's broadcasts use them): after a restart, the pooled connections to the node are dead, and
    the next stack's `ping` would write to one. A process that outlives a broker restart is a test's
    doing: `conquer` commands are short-lived."""
    from kombu import pools

    port = int(node.url.rpartition(":")[2].rstrip("/"))
    for group in (pools.connections, pools.producers):
        # Keyed by the connection's identity: (transport, host, user, password, vhost, port, ...).
        for key in [key for key in group if len(key) > 5 and key[5] == port]:
            with suppress(Exception):  # closing a dead connection may raise anything kombu can
                group.pop(key).force_close_all()


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
