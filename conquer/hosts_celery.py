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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil

from conquer.hosts import KILL_DEADLINE_S, Host, Hosts, hosts, relay

if TYPE_CHECKING:
    from workers.celery.client import Client
    from workers.celery.settings import Settings


@contextmanager
def redis_on_link(directory: Path, address: str) -> Iterator[str]:
    """A private Redis for the hosts, listening on `address` (the gateway) only, on a free port; its
    URL. Killed on the way out."""
    from workers.celery.brokers.redis import redis_client, server_binary

    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]

    # fmt: off
    config = "\n".join([
        f"bind {address}", f"port {port}", f"dir {directory}", 'save ""', "appendonly no",
        "maxmemory-policy noeviction", "loglevel warning", f"logfile {directory / 'redis.log'}",
    ])
    # fmt: on
    process = subprocess.Popen(
        [server_binary(), "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
    )
    assert process.stdin
    process.stdin.write(config.encode())
    process.stdin.close()
    url = f"redis://{address}:{port}/0"
    try:
        client = redis_client(url, timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except Exception:  # redis-py's ConnectionError while it starts
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the hosts' Redis did not start (see redis.log)") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait(KILL_DEADLINE_S)


#: How long a private RabbitMQ node may take to accept a login: five times the 6.8-11.5 s measured
#: for the tests' nodes (tests/rabbitmq_server.py).
RABBITMQ_START_S = 60.0


@contextmanager
def rabbitmq_on_link(directory: Path, address: str) -> Iterator[str]:
    """A private RabbitMQ node for the hosts (`workers.celery.brokers.rabbitmq.server_command`: its
    own name, ports, data and epmd, all in `directory`), reached on `address`; its URL there.

    The node listens on loopback only, and its user may log in only from there: the hosts reach it
    through `conquer.hosts.relay`, whose upstream connections come from 127.0.0.1. The relay keeps a
    cut silent, so a partition is noticed by the node's heartbeat as it would be without it.

    The node runs in a PID namespace of its own (`unshare --pid --fork --kill-child`): killing its
    first process ends every process it started — the Erlang VM, its helpers, and the epmd that
    daemonizes out of its session — since the kernel kills a PID namespace whose init dies. And it
    is started through `workers.celery.launcher`, so a caller SIGKILLed takes it along. Needs root
    (as the hosts do)."""
    from workers.celery.brokers import rabbitmq

    directory.chmod(0o700)  # the node's data, password and Erlang cookie: this user's only
    command, url = rabbitmq.server_command(directory)
    loopback = urlsplit(url)
    if loopback.hostname is None or loopback.port is None:
        raise RuntimeError("the private RabbitMQ node's URL names no host and port")
    log = directory / "server.out"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.celery.launcher", str(os.getpid()), "unshare", "--pid",
             "--fork", "--kill-child", *command],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + RABBITMQ_START_S
        while True:
            try:
                rabbitmq.ping(url, timeout=2)
                break
            except rabbitmq.errors():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the hosts' RabbitMQ did not start (see {log})") from None
                time.sleep(0.1)
        with relay(address, (loopback.hostname, loopback.port)) as port:
            yield url.replace(f"@{loopback.hostname}:{loopback.port}/", f"@{address}:{port}/", 1)
    finally:
        _stop_namespace(process)


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


#: A private broker the hosts reach, by URL scheme: (directory, gateway address) -> its URL, for as
#: long as the block runs. (A broker added to `workers.celery.brokers` adds its line here; the result
#: backend is a Redis on the link whatever the broker.)
BrokerOnLink = Callable[[Path, str], AbstractContextManager[str]]
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

    def host_of(self, node: str) -> Host:
        return self.nodes[node]

    def running(self, job_id: str) -> tuple[Host, int] | None:
        """(host, chunk index) of a chunk of the job running now, as `celery inspect active` says."""
        inspect = self.client.app.control.inspect(timeout=1.0, limit=len(self.nodes))
        for node, tasks in (inspect.active() or {}).items():
            for task in tasks:
                head, _, index = str(task.get("id", "")).rpartition("-")
                if head == job_id and node in self.nodes:
                    return self.nodes[node], int(index)
        return None

    def records(self, job_id: str, index: int) -> list[dict[str, Any]]:
        """The job store's records of chunk `index`'s runs that finished, in the order they landed."""
        return [record for record in self.client.store.records(job_id) if record["index"] == index]

    def logs_tail(self, characters: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-characters:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


@contextmanager
def celery_hosts(directory: Path, scheme: str = "redis", count: int = 2) -> Iterator[CeleryHosts]:
    """`count` hosts, a private broker of `scheme` on their link (and a Redis there for the results,
    which are Redis's whatever the broker), a `celery worker` on each, all answering; everything
    stopped and removed on the way out."""
    from workers.celery.client import Client
    from workers.celery.settings import Settings

    with ExitStack() as stack:
        net = stack.enter_context(hosts(count))
        results = stack.enter_context(redis_on_link(directory, net.gateway))
        settings = Settings(
            key_prefix=f"hosts-{net.run_id}", worker_concurrency=1, task_events=False
        ).with_broker(results)
        if scheme != "redis":
            (directory / scheme).mkdir(exist_ok=True)
            url = stack.enter_context(BROKERS_ON_LINK[scheme](directory / scheme, net.gateway))
            settings = dataclasses.replace(settings, broker_url=url)
        logs = directory / "logs"
        logs.mkdir(exist_ok=True)
        nodes = {}
        for host in net.hosts:
            log = stack.enter_context((logs / f"{host.name}.log").open("wb"))
            name, _ = celery_worker(net, host, settings, log)
            nodes[name] = host
        client = Client.connect(settings)
        stack.callback(client.close)
        drill = CeleryHosts(net, settings, client, nodes, logs)
        _wait_for_nodes(drill)
        yield drill


def _wait_for_nodes(drill: CeleryHosts) -> None:
    waiting = set(drill.nodes)
    deadline = time.monotonic() + WORKERS_START_S
    while waiting:
        replies = drill.client.app.control.ping(destination=sorted(waiting), timeout=0.5) or []
        for reply in replies:
            waiting.difference_update(reply)
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(
                f"worker(s) {', '.join(sorted(waiting))} did not answer in {WORKERS_START_S:g} s"
            )
