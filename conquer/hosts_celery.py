"""Celery on several hosts (`conquer.hosts`): a private Redis on the hosts' link, a `celery worker` on
each host, and a client for them — what the several-hosts drills (tests/drills/test_hosts.py) and
`conquer demo hosts` run their jobs on.

The broker is chosen by URL scheme (`BROKERS_ON_LINK`): the Redis on the link, or a private RabbitMQ
node reached through a relay on the link (`rabbitmq_on_link`). The result backend is the Redis on the
link whatever the broker, as it is Redis everywhere in the project.

Usage::

    with celery_hosts(directory) as drill:          # 2 hosts, Redis, a worker on each, answering
        job_id = drill.client.submit(job)
        host, index = drill.running(job_id)         # a chunk running now, and where
        drill.net.cut(host)

The `recovery` bench series (`conquer.bench.recovery`) also restarts the broker on its port and data
(`celery_hosts(..., durable=True)`, `CeleryHosts.restart_broker`), SIGKILLs a worker or its pool
process (`workers`, `running_in`, `pool_pids`) and puts the deployment back (`respawn`,
`wait_for_workers`, `broker_idle`, `busy`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil

from conquer.hosts import KILL_DEADLINE_S, Host, Hosts, hosts, relay

if TYPE_CHECKING:
    from workers.celery.client import Client
    from workers.celery.settings import Settings


#: How long a private server on the link gets to stop cleanly (SIGTERM: Redis writes its append-only
#: file, RabbitMQ runs its own shutdown) before SIGKILL: generous — a RabbitMQ node's whole restart,
#: stop and boot, took 9.3 s here.
STOP_GRACE_S = 25.0

#: How long the hosts' Redis may take to answer after a start (it loads its append-only file first).
REDIS_START_S = 20.0


@dataclass
class LinkRedis:
    """A private Redis for the hosts, listening on `address` (the gateway) only: the result backend,
    and the broker on `redis` URLs. A drill may stop it and start it again on the same port and data
    (`restart`); with `appendonly` it keeps every command in an append-only file, fsynced every second
    as the compose stack's Redis does, so a clean stop loses nothing."""

    directory: Path
    address: str
    port: int
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and data) and wait until it answers."""
        from workers.celery.brokers.redis import redis_client, server_binary

        # fmt: off
        config = "\n".join([
            f"bind {self.address}", f"port {self.port}", f"dir {self.directory}", 'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}", "appendfsync everysec",
            "maxmemory-policy noeviction", "loglevel warning", f"logfile {self.directory / 'redis.log'}",
        ])
        # fmt: on
        self.process = subprocess.Popen(
            [server_binary(), "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
        )
        assert self.process.stdin
        self.process.stdin.write(config.encode())
        self.process.stdin.close()
        client = redis_client(self.url, timeout=2)
        try:
            deadline = time.monotonic() + REDIS_START_S
            while True:
                try:
                    client.ping()
                    return
                except Exception:  # redis-py's ConnectionError while it starts
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the hosts' Redis did not start (see redis.log)") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM: with `appendonly`, Redis writes and fsyncs its file first), as
        `docker compose restart` would; SIGKILL after STOP_GRACE_S."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(KILL_DEADLINE_S)
        self.process = None


@contextmanager
def redis_on_link(directory: Path, address: str, *, appendonly: bool = False) -> Iterator[LinkRedis]:
    """A private Redis for the hosts (`LinkRedis`) on a free port of `address`, answering; killed on
    the way out."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    server = LinkRedis(directory, address, port, appendonly)
    try:
        server.start()
        yield server
    finally:
        server.kill()


#: How long a private RabbitMQ node may take to accept a login: five times the 6.8-11.5 s measured
#: for the tests' nodes (tests/rabbitmq_server.py).
RABBITMQ_START_S = 60.0


@dataclass
class LinkRabbitMQ:
    """A private RabbitMQ node for the hosts (see `rabbitmq_on_link`), which a drill may stop and
    start again (`restart`) on the same name, ports and data: its queue is durable and the chunk
    messages persistent, so what was queued survives a clean stop. `url` is the node as the hosts
    reach it (through the relay); `node_url` is the node itself, on loopback."""

    directory: Path
    command: list[str]
    node_url: str = field(repr=False)  # both URLs hold the node's password
    url: str = field(default="", repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the node (again) in a PID namespace of its own and wait until it accepts a login."""
        from workers.celery.brokers import rabbitmq

        log = self.directory / "server.out"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workers.celery.launcher", str(os.getpid()), "unshare", "--pid",
                 "--fork", "--kill-child", *self.command],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + RABBITMQ_START_S
        while True:
            try:
                rabbitmq.ping(self.node_url, timeout=2)
                return
            except rabbitmq.errors():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the hosts' RabbitMQ did not start (see {log})") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the node cleanly: SIGTERM to its namespace's init (the server script, whose trap runs
        RabbitMQ's own shutdown), then wait for the namespace to end; SIGKILL it after STOP_GRACE_S."""
        if self.process is None:
            return
        try:
            unshare = psutil.Process(self.process.pid)
            inits, inside = unshare.children(), unshare.children(recursive=True)
        except psutil.NoSuchProcess:
            inits, inside = [], []
        for init in inits:
            with suppress(psutil.Error):
                init.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _stop_namespace(self.process)
        _, alive = psutil.wait_procs(inside, timeout=KILL_DEADLINE_S)
        if alive:
            raise RuntimeError(f"RabbitMQ processes {[p.pid for p in alive]} survived their namespace")
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.process is not None:
            _stop_namespace(self.process)
        self.process = None


@contextmanager
def rabbitmq_on_link(directory: Path, address: str) -> Iterator[LinkRabbitMQ]:
    """A private RabbitMQ node for the hosts (`workers.celery.brokers.rabbitmq.server_command`: its
    own name, ports, data and epmd, all in `directory`), reached on `address`; `url` is its URL there.

    The node listens on loopback only, and its user may log in only from there: the hosts reach it
    through `conquer.hosts.relay`, whose upstream connections come from 127.0.0.1. The relay keeps a
    cut silent, so a partition is noticed by the node's heartbeat as it would be without it; while the
    node is stopped, the relay closes every connection it is given.

    The node runs in a PID namespace of its own (`unshare --pid --fork --kill-child`): killing its
    first process ends every process it started — the Erlang VM, its helpers, and the epmd that
    daemonizes out of its session — since the kernel kills a PID namespace whose init dies. And it
    is started through `workers.celery.launcher`, so a caller SIGKILLed takes it along. Needs root
    (as the hosts do)."""
    from workers.celery.brokers import rabbitmq

    directory.chmod(0o700)  # the node's data, password and Erlang cookie: this user's only
    command, node_url = rabbitmq.server_command(directory)
    loopback = urlsplit(node_url)
    if loopback.hostname is None or loopback.port is None:
        raise RuntimeError("the private RabbitMQ node's URL names no host and port")
    server = LinkRabbitMQ(directory, command, node_url)
    try:
        server.start()
        with relay(address, (loopback.hostname, loopback.port)) as port:
            server.url = node_url.replace(f"@{loopback.hostname}:{loopback.port}/", f"@{address}:{port}/", 1)
            yield server
    finally:
        server.kill()


def _stop_namespace(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the PID namespace's init (the child of `process`, unshare): the kernel kills every
    other process in the namespace, and the init reaps them as it dies; unshare, reaping the init,
    exits, and is reaped here. (Killing unshare first would orphan the init, to be reaped by whatever
    adopts it — on a machine whose PID 1 is slow to reap, a zombie left behind.) Waits until all of
    them are gone."""
    try:
        unshare = psutil.Process(process.pid)
        inits, inside = unshare.children(), unshare.children(recursive=True)
    except psutil.NoSuchProcess:
        inits, inside = [], []
    for init in inits:  # one: unshare forks once
        with suppress(psutil.Error):
            init.kill()
    try:
        process.wait(KILL_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()  # its --kill-child takes the init along
        process.wait(KILL_DEADLINE_S)
    _, alive = psutil.wait_procs(inside, timeout=KILL_DEADLINE_S)
    if alive:
        raise RuntimeError(f"RabbitMQ processes {[p.pid for p in alive]} survived their namespace")


#: A private broker the hosts reach, by URL scheme: (directory, gateway address) -> the server (its
#: `url`, `stop`, `start`, `restart`), for as long as the block runs. (A broker added to
#: `workers.celery.brokers` adds its line here; the result backend is a Redis on the link whatever the
#: broker.)
LinkServer = LinkRedis | LinkRabbitMQ
BrokerOnLink = Callable[[Path, str], AbstractContextManager[LinkServer]]
BROKERS_ON_LINK: dict[str, BrokerOnLink] = {"redis": redis_on_link, "amqp": rabbitmq_on_link}


def unavailable(scheme: str) -> str | None:
    """Why a broker of `scheme` cannot be run on the hosts' link here (one line), or None."""
    if scheme not in BROKERS_ON_LINK:
        return f"no {scheme} server for the hosts' link (conquer.hosts_celery.BROKERS_ON_LINK)"
    if scheme == "amqp":
        from workers.celery.brokers import rabbitmq

        try:
            rabbitmq.server_binary()
        except RuntimeError:
            return "the rabbitmq broker needs rabbitmq-server, which is not installed"
        if shutil.which("unshare") is None:
            return "the rabbitmq broker needs `unshare` (util-linux), which is not installed"
    return None


def celery_worker(
    net: Hosts, host: Host, settings: Settings, log: IO[bytes]
) -> tuple[str, subprocess.Popen[bytes]]:
    """A `celery worker` (one node, `settings`) on `host`; its node name and process."""
    from workers.celery.localstack import WORKER_FLAGS

    name = f"{host.name}@{net.run_id}"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "--hostname",
        name,
        "--loglevel",
        "INFO",
    ]
    return name, net.spawn(host, [*command, *WORKER_FLAGS], settings.to_env(), log)


#: How long the workers on the hosts get to answer a first ping (a cold `celery worker` start).
WORKERS_START_S = 90.0


@dataclass
class CeleryHosts:
    """Celery on several hosts: one worker node (one pool process) per host, a private broker on the
    broker host, and a client for it in this process."""

    net: Hosts
    settings: Settings
    client: Client
    #: Node name -> the host it runs on.
    nodes: dict[str, Host]
    logs: Path
    #: The broker on the link, which a drill may stop and start again (on `redis` URLs: the Redis that
    #: is also the result backend).
    broker: LinkServer | None = None
    #: Node name -> its `celery worker` main process (`ip netns exec` execs it: the same pid).
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def host_of(self, node: str) -> Host:
        return self.nodes[node]

    def node_on(self, host: Host) -> str:
        """The worker node that runs on `host`."""
        return next(node for node, where in self.nodes.items() if where == host)

    def running(self, job_id: str) -> tuple[Host, int] | None:
        """(host, chunk index) of a chunk of the job running now, as `celery inspect active` says."""
        found = self.running_in(job_id)
        return (found[0], found[1]) if found else None

    def running_in(self, job_id: str) -> tuple[Host, int, int] | None:
        """(host, chunk index, pool process id) of a chunk of the job running now, as `celery inspect
        active` says."""
        inspect = self.client.app.control.inspect(timeout=1.0, limit=len(self.nodes))
        for node, tasks in (inspect.active() or {}).items():
            for task in tasks:
                head, _, index = str(task.get("id", "")).rpartition("-")
                if head == job_id and node in self.nodes:
                    return self.nodes[node], int(index), int(task.get("worker_pid") or 0)
        return None

    def busy(self) -> list[str]:
        """The nodes running a task now (any task), as `celery inspect active` says; a node that does
        not answer counts as busy."""
        inspect = self.client.app.control.inspect(timeout=1.0, limit=len(self.nodes))
        active = inspect.active() or {}
        return sorted(node for node in self.nodes if node not in active or active[node])

    def pool_pids(self, host: Host) -> list[int]:
        """The pool processes of `host`'s worker: its main process's children."""
        try:
            return [child.pid for child in psutil.Process(self.workers[self.node_on(host)].pid).children()]
        except psutil.NoSuchProcess:
            return []

    def respawn(self, host: Host) -> None:
        """Start `host`'s worker again, under the same node name, after SIGKILLing whatever is left in
        the host (a killed worker's pool process, if its death signal has not reached it yet); wait
        until every worker answers a ping."""
        self.net.crash(host)
        node = self.node_on(host)
        with (self.logs / f"{host.name}.log").open("ab") as log:
            name, process = celery_worker(self.net, host, self.settings, log)
        assert name == node, f"the worker came back as {name}, not {node}"
        self.workers[node] = process
        self.wait_for_workers()

    def wait_for_workers(self, timeout: float = WORKERS_START_S) -> None:
        """Until every worker node answers a ping (RuntimeError naming the silent ones after `timeout`)."""
        waiting = set(self.nodes)
        deadline = time.monotonic() + timeout
        while waiting:
            try:
                replies = self.client.app.control.ping(destination=sorted(waiting), timeout=0.5) or []
            except Exception:  # the broker going away under the ping: kombu or the transport's error
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            for reply in replies:
                waiting.difference_update(reply)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"worker(s) {', '.join(sorted(waiting))} did not answer in {timeout:g} s")

    def restart_broker(self) -> None:
        """Stop the broker cleanly and start it again on the same port and data; then this process's
        connections to it are new ones (`reconnect`). The workers reconnect by themselves."""
        if self.broker is None:
            raise RuntimeError("these hosts' broker cannot be restarted")
        self.broker.restart()
        self.reconnect()

    def reconnect(self) -> None:
        """A new client, after dropping kombu's process-wide pools of connections to the broker
        (remote control's pings use them; after a broker restart they are dead)."""
        forget_pools(self.settings.broker_url)
        with suppress(Exception):  # closing a client whose connections died may raise anything
            self.client.close()
        from workers.celery.client import Client

        self.client = Client.connect(self.settings)

    def broker_idle(self) -> bool:
        """Nothing queued on the broker, and on Redis nothing taken and unacknowledged either (a chunk
        that would come back after the visibility timeout). On RabbitMQ a passive declare counts only
        the messages ready; a delivery still unacknowledged shows as a busy worker (`busy`)."""
        from workers.celery import brokers
        from workers.celery.brokers import rabbitmq
        from workers.celery.brokers.redis import key_prefix, redis_client

        if brokers.for_url(self.settings.broker_url) is rabbitmq:
            from kombu import Connection

            with Connection(self.settings.broker_url, connect_timeout=3, heartbeat=0) as connection:
                channel: Any = connection.default_channel
                try:
                    _, ready, _ = channel.queue_declare(queue="conquer", passive=True)
                except rabbitmq.errors():
                    return True  # no such queue (yet): nothing in it
                return int(ready) == 0
        prefix = key_prefix(self.settings)
        with redis_client(self.settings.result_backend, timeout=5) as redis:
            return bool(redis.llen(f"{prefix}conquer") == 0 and redis.hlen(f"{prefix}unacked") == 0)

    def records(self, job_id: str, index: int) -> list[dict[str, Any]]:
        """The job store's records of chunk `index`'s runs that finished, in the order they landed."""
        return [record for record in self.client.store.records(job_id) if record["index"] == index]

    def logs_tail(self, characters: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-characters:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def forget_pools(url: str) -> None:
    """Close and drop kombu's process-wide pools of connections to the broker at `url` (and only
    those): kombu keys them by the connection's identity, (transport, host, user, password, vhost,
    port, ...)."""
    from kombu import pools

    where = urlsplit(url)
    for group in (pools.connections, pools.producers):
        for key in [
            key for key in group if len(key) > 5 and (key[1], key[5]) == (where.hostname, where.port)
        ]:
            with suppress(Exception):  # closing a dead connection may raise anything kombu can
                group.pop(key).force_close_all()


@contextmanager
def celery_hosts(
    directory: Path, scheme: str = "redis", count: int = 2, *, durable: bool = False
) -> Iterator[CeleryHosts]:
    """`count` hosts, a private broker of `scheme` on their link (and a Redis there for the results,
    which are Redis's whatever the broker), a `celery worker` on each, all answering; everything
    stopped and removed on the way out. With `durable`, the Redis keeps an append-only file, so that
    a drill may restart it (`CeleryHosts.restart_broker`) without losing a message or a result (a
    RabbitMQ node's queue is durable anyway)."""
    from workers.celery.client import Client
    from workers.celery.settings import Settings

    with ExitStack() as stack:
        net = stack.enter_context(hosts(count))
        results = stack.enter_context(redis_on_link(directory, net.gateway, appendonly=durable))
        settings = Settings(
            key_prefix=f"hosts-{net.run_id}", worker_concurrency=1, task_events=False
        ).with_broker(results.url)
        broker: LinkServer = results
        if scheme != "redis":
            (directory / scheme).mkdir(exist_ok=True)
            broker = stack.enter_context(BROKERS_ON_LINK[scheme](directory / scheme, net.gateway))
            settings = dataclasses.replace(settings, broker_url=broker.url)
        logs = directory / "logs"
        logs.mkdir(exist_ok=True)
        nodes, workers = {}, {}
        for host in net.hosts:
            log = stack.enter_context((logs / f"{host.name}.log").open("wb"))
            name, process = celery_worker(net, host, settings, log)
            nodes[name], workers[name] = host, process
        drill = CeleryHosts(net, settings, Client.connect(settings), nodes, logs, broker, workers)

        def close_client() -> None:  # the client of the end: `reconnect` replaces the first
            drill.client.close()

        stack.callback(close_client)
        drill.wait_for_workers()
        yield drill
