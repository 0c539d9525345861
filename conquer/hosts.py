"""Several hosts on one Linux machine: each worker host a network namespace, joined to the "broker
host" (this machine's own namespace) by a veth pair on a private bridge — and the faults that only
several hosts have: a link cut silently (a partition), and a host that dies whole.

    root namespace ("broker host")            host namespaces
    bridge cq<id>br  10.X.Y.1/24  <-veth->  eth0 10.X.Y.2/24   conquer-<id>-host1
                                  <-veth->  eth0 10.X.Y.3/24   conquer-<id>-host2 ...

Everything is named after a random run id (names, and a /24 no route of this machine uses), so runs
side by side never meet, and `Hosts.close` removes what the run made — its processes (SIGKILL), its
nftables tables, its namespaces (their veth ends go with them) and its bridge — however the run ended.

A *cut* is silent: an nftables table on the broker-side veth drops every frame both ways, at the
netdev ingress and egress hooks, so neither end is told anything (no RST, no FIN, no ICMP, no error
on send): the host is alive and unreachable, as behind a failed switch. (A link set down would be
seen by the host's kernel; a drop in the host's own OUTPUT hook fails its sends with EPERM.)
A *crash* SIGKILLs every process in the host's namespace — the host's kernel stays, so its sockets
are closed the way a killed process's are.

Needs root, `ip` (iproute2) and `nft` (nftables); `unavailable()` says in one line what is missing.

Also here: `relay`, for a server the hosts must reach that listens on loopback only. What runs on the
hosts — Redis on the link, a Celery worker per host — is `conquer.hosts_celery`.

Usage::

    with hosts(2) as net:
        worker = net.spawn(net.hosts[0], ["python", "-m", "workers.managers", "worker", ...], env, log)
        net.cut(net.hosts[0])      # silent partition
        net.heal(net.hosts[0])
        net.crash(net.hosts[1])    # SIGKILL everything in it
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    pass

#: How long the processes of a crashed or removed host get to disappear after SIGKILL.
KILL_DEADLINE_S = 10.0

#: Every name this module makes starts with one of these (and then the run's id).
NETNS_PREFIX = "conquer-"
LINK_PREFIX = "cq"
TABLE_PREFIX = "conquer_"


def unavailable() -> str | None:
    """Why several hosts cannot be built here (one line), or None."""
    if os.geteuid() != 0:
        return "several hosts need root (network namespaces, veth pairs, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"several hosts need `{tool}` ({package}), which is not installed"
    return None


@dataclass(frozen=True, slots=True)
class Host:
    #: Its name in messages and worker names ("host1").
    name: str
    #: Its network namespace (`ip netns exec NETNS ...`).
    netns: str
    #: Its address on the private link.
    address: str
    #: The broker-side end of its veth pair (where a cut drops its frames).
    veth: str


@dataclass
class Hosts:
    run_id: str
    #: The broker host's address on the private link: where servers the hosts reach must listen.
    gateway: str
    bridge: str
    hosts: list[Host] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cut_tables: set[str] = field(default_factory=set)

    def spawn(
        self, host: Host, command: Sequence[str], env: dict[str, str], log: IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `command` on `host` (in its namespace), its output to `log` (or discarded)."""
        output: IO[bytes] | int = log if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *command],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the terminal is for the caller, which stops these
        )
        self.processes.append(process)
        return process

    def cut(self, host: Host) -> None:
        """Cut `host`'s link silently: every frame through its veth is dropped, both ways."""
        table = self._table(host)
        rules = f"""
        table netdev {table} {{
            chain inbound {{ type filter hook ingress device "{host.veth}" priority -500; policy drop; }}
            chain outbound {{ type filter hook egress device "{host.veth}" priority -500; policy drop; }}
        }}
        """
        self.cut_tables.add(table)
        _run(["nft", "-f", "-"], stdin=rules)

    def heal(self, host: Host) -> None:
        """Give `host` its link back."""
        table = self._table(host)
        _run(["nft", "delete", "table", "netdev", table])
        self.cut_tables.discard(table)

    def pids(self, host: Host) -> list[int]:
        """Every process in `host`'s namespace."""
        return [int(pid) for pid in _run(["ip", "netns", "pids", host.netns], must=False).split()]

    def crash(self, host: Host) -> list[int]:
        """SIGKILL every process in `host`'s namespace and wait until none is left; the pids killed."""
        killed: list[int] = []
        deadline = time.monotonic() + KILL_DEADLINE_S
        while pids := self.pids(host):
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            self._reap()
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} of {host.name} survived SIGKILL")
            time.sleep(0.02)
        return killed

    def close(self) -> None:
        """Remove everything the run made, in an order that works from any state: the processes,
        the cuts, the namespaces (which take their veth ends with them), the bridge."""
        errors: list[str] = []
        for host in self.hosts:
            try:
                self.crash(host)
            except RuntimeError as error:
                errors.append(str(error))
        for process in self.processes:
            with suppress(ProcessLookupError):
                process.kill()
            with suppress(subprocess.TimeoutExpired):
                process.wait(KILL_DEADLINE_S)
        for table in sorted(self.cut_tables):
            _run(["nft", "delete", "table", "netdev", table], must=False)
        self.cut_tables.clear()
        for host in self.hosts:
            # Deleting the broker-side end takes the pair; a namespace's own end would go with it,
            # but only once the kernel gets round to destroying the namespace.
            _run(["ip", "link", "delete", host.veth], must=False)
            _run(["ip", "netns", "delete", host.netns], must=False)
        _run(["ip", "link", "delete", self.bridge], must=False)
        left = leftovers(self.run_id)
        if left or errors:
            raise RuntimeError(f"could not remove run {self.run_id}'s {', '.join(left + errors)}")

    def _table(self, host: Host) -> str:
        return f"{TABLE_PREFIX}{self.run_id}_{host.name}"

    def _reap(self) -> None:
        for process in self.processes:
            process.poll()


def leftovers(run_id: str = "") -> list[str]:
    """What is left of run `run_id` (of any run, without one): namespaces, links, nftables tables."""
    found: list[str] = []
    namespaces = _run(["ip", "netns", "list"], must=False)
    found += [
        f"namespace {line.split()[0]}"
        for line in namespaces.splitlines()
        if line.startswith(f"{NETNS_PREFIX}{run_id}")
    ]
    links = _run(["ip", "-o", "link", "show"], must=False)
    for line in links.splitlines():
        name = line.split(":")[1].strip().partition("@")[0]
        if name.startswith(f"{LINK_PREFIX}{run_id}"):
            found.append(f"link {name}")
    tables = _run(["nft", "list", "tables"], must=False)
    found += [
        f"nftables table {line.split()[-1]}"
        for line in tables.splitlines()
        if line.split()[-1:] and line.split()[-1].startswith(f"{TABLE_PREFIX}{run_id}")
    ]
    return found


@contextmanager
def hosts(count: int) -> Iterator[Hosts]:
    """`count` worker hosts on a private bridge, removed on the way out however the block ends."""
    run_id = secrets.token_hex(3)  # 6 hex digits: interface names must fit in 15 characters
    subnet = _free_subnet()
    addresses = list(subnet.hosts())
    net = Hosts(run_id=run_id, gateway=str(addresses[0]), bridge=f"{LINK_PREFIX}{run_id}br")
    with ExitStack() as cleanup:
        cleanup.callback(net.close)
        _run(["ip", "link", "add", net.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", net.bridge])
        _run(["ip", "link", "set", net.bridge, "up"])
        for number in range(1, count + 1):
            host = Host(
                name=f"host{number}",
                netns=f"{NETNS_PREFIX}{run_id}-host{number}",
                address=str(addresses[number]),
                veth=f"{LINK_PREFIX}{run_id}v{number}",
            )
            net.hosts.append(host)
            _run(["ip", "netns", "add", host.netns])
            inside = f"{LINK_PREFIX}{run_id}p{number}"
            _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", inside])
            _run(["ip", "link", "set", inside, "netns", host.netns])
            _run(["ip", "link", "set", host.veth, "master", net.bridge, "up"])
            here = ["ip", "-n", host.netns]
            _run([*here, "link", "set", inside, "name", "eth0"])
            _run([*here, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", "eth0"])
            _run([*here, "link", "set", "eth0", "up"])
            _run([*here, "link", "set", "lo", "up"])
        yield net


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.X.Y.0/24 that overlaps no address or route of this machine."""
    taken = []
    for line in _run(["ip", "-4", "route", "show", "table", "all"]).splitlines():
        words = line.split()
        destination = words[1] if words and words[0] in ("local", "broadcast", "unicast") else words[0]
        with suppress(ValueError, IndexError):
            taken.append(ipaddress.ip_network(destination, strict=False))
    for _ in range(100):
        candidate = ipaddress.IPv4Network(f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(network) for network in taken if network.prefixlen > 0):
            return candidate
    raise RuntimeError("no free 10.X.Y.0/24 for the hosts' link")


def _run(command: list[str], stdin: str | None = None, *, must: bool = True) -> str:
    """Run a plumbing command; its output. If it fails: RuntimeError with its message, unless not
    `must` (clean-up removes what may already be gone — nothing, if the tool itself is missing: a
    clean-up that raised there would leave the rest of the run behind)."""
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        if must:
            raise
        return ""
    if must and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextmanager
def relay(address: str, target: tuple[str, int]) -> Iterator[int]:
    """Forward every TCP connection made to `address` (on a free port, yielded) to `target`, byte for
    byte, for as long as the block runs: how the hosts reach a server that listens on loopback only
    (a private RabbitMQ node). An end (FIN) on one side is passed on to the other, and silence stays
    silence: a cut host's connection stays open upstream, as it would at the server itself, until the
    server's own heartbeat or timeout ends it."""
    listener = socket.create_server((address, 0))
    connections: list[socket.socket] = []

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # the end, passed on
        except OSError:  # reset, or closed on the way out: end the other side too
            with suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            try:
                up = socket.create_connection(target, timeout=5)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            connections.extend((down, up))
            for source, sink in ((down, up), (up, down)):
                threading.Thread(target=pump, args=(source, sink), name="relay", daemon=True).start()

    acceptor = threading.Thread(target=accept, name="relay-accept", daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        acceptor.join(KILL_DEADLINE_S)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
