"""A Redis server of a test's own, which the test may stop, crash, restart and configure (AOF, password).

The session's shared Redis (REDIS_URL or the embedded one) must never be restarted under the other
tests; drills that take the broker away use one of these instead. It runs the same binary the
embedded stack runs (`workers.celery.brokers.redis.server_binary`), on a free TCP port of 127.0.0.1.

With `appendonly`, it persists as the compose stack's Redis does: an append-only file fsynced every
second (`appendfsync everysec`, compose.yaml). `stop()` is a clean stop (SIGTERM: Redis writes and
fsyncs its AOF first, as on `docker compose restart`); `crash()` is SIGKILL (an OOM kill, `docker
kill`): Redis gets no chance to do anything.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from workers.celery.brokers.redis import server_binary
from workers.celery.localstack import free_port

#: How long a starting Redis may take to answer PING (it loads its AOF first).
START_DEADLINE_S = 20


@dataclass
class RedisServer:
    directory: Path
    port: int
    password: str | None = None
    appendonly: bool = False
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        """Start the server (again) on the same port and directory, and wait until it answers."""
        # fmt: off
        command = [
            self.binary or server_binary(), "-",  # the configuration on stdin: no password in argv
        ]
        config = "\n".join([
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.directory}",
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync everysec" if self.appendonly else "",
            "maxmemory-policy noeviction",
            "loglevel warning",
            f"logfile {self.directory / 'redis.log'}",
            f"requirepass {self.password}" if self.password else "",
        ])
        # fmt: on
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert self.process.stdin
        self.process.stdin.write(config.encode())
        self.process.stdin.close()
        client = self.client()
        deadline = time.monotonic() + START_DEADLINE_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"private Redis did not start: {self.log_tail()}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server the way `docker restart` would (SIGKILL after SIGTERM's grace)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def crash(self) -> None:
        """Kill the server at once (SIGKILL): no shutdown, no last write of its AOF."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, crash: bool = False) -> None:
        if crash:
            self.crash()
        else:
            self.stop()
        self.start()

    def log_tail(self, lines: int = 5) -> str:
        log = self.directory / "redis.log"
        return " | ".join(log.read_text().splitlines()[-lines:]) if log.exists() else "(no log)"


@contextmanager
def redis_server(
    directory: Path,
    *,
    password: str | None = None,
    appendonly: bool = False,
    started: bool = True,
    binary: str | None = None,
) -> Iterator[RedisServer]:
    """A private Redis in `directory` (a pytest tmp_path), stopped on the way out whatever happened;
    `binary` is the redis-server to run (default: the embedded stack's)."""
    server = RedisServer(directory, free_port(), password, appendonly, binary)
    try:
        if started:
            server.start()
        yield server
    finally:
        server.stop()
