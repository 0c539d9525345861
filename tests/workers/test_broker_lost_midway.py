"""A broker lost *after* a stack command's reachability check: `cancel`, `workers`, `submit`, `status`
and `result` still end in one line and exit 3 (never a traceback and exit 70), and `cancel` says what
it did and did not do.

The command reaches the session's stack (Redis, or RabbitMQ with its Redis result backend) through a
proxy that forwards faithfully until the client sends its first remote-control broadcast (the
`revoke` of `cancel`, the `inspect` of `workers`, the is-anyone-there question of `submit`); there it
drops every connection and turns each new one away: the broker is gone, after the check passed and
whatever came before the broadcast was done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conquer.exitcodes import ExitCode
from tasks import Job
from tests.conftest import Stack, conquer, one_line, wait_until
from tests.proxy import Proxy
from workers.celery.jobstore import CANCELLED
from workers.celery.settings import mask

#: Where the broker goes away, as each client's bytes show it: on Redis, at the first PUBLISH (kombu's
#: fanout is pub/sub), as redis-py writes it; on RabbitMQ, at the first exchange.declare method
#: (class 40, method 10), which a broadcast sends first (its exchange) and waits for. Not at the
#: basic.publish: without publisher confirms, a publish written to the socket counts as sent, so a
#: broker lost right after it cannot be told from one that got it.
BROADCAST = {"redis": b"$7\r\nPUBLISH\r\n", "rabbitmq": b"\x00\x28\x00\x0a"}


class CuttingProxy(Proxy):
    """A TCP proxy to `upstream` (a (host, port) or a Unix socket path) that forwards both ways until
    the client side sends `cut_on`; from then on it closes every connection and every new one."""

    def __init__(self, upstream: tuple[str, int] | str, cut_on: bytes) -> None:
        super().__init__(upstream, "cutting-proxy")
        self.cut_on = cut_on
        self.cut = threading.Event()

    def admits(self) -> bool:
        return not self.cut.is_set()

    def passed(self, received: bytes) -> tuple[bytes, bool]:
        if self.cut_on not in received:
            return received, False
        self.cut.set()
        self.drop_all()
        return b"", True


def _upstream(url: str) -> tuple[str, int] | str:
    if url.startswith("redis+socket://"):
        return url.removeprefix("redis+socket://")
    host_port = url.partition("://")[2].rpartition("@")[2].partition("/")[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


@contextmanager
def through_a_proxy(
    stack: Stack, broker: str, cut_on: bytes | None = None
) -> Iterator[tuple[CuttingProxy, dict[str, str]]]:
    """The environment of a `conquer` whose broker is `stack`'s, reached through a CuttingProxy that
    cuts at `cut_on` (by default, at the first broadcast)."""
    settings = stack.stack.settings
    with CuttingProxy(_upstream(settings.broker_url), cut_on or BROADCAST[broker]) as proxy:
        if broker == "redis":  # broker and results in one Redis: all of it goes away
            url = f"redis://127.0.0.1:{proxy.port}/0"
            env = {**stack.env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
        else:  # only the broker goes away; the Redis result backend stays
            port = settings.broker_url.rpartition(":")[2].partition("/")[0]
            env = {
                **stack.env,
                "CELERY_BROKER_URL": settings.broker_url.replace(f":{port}/", f":{proxy.port}/"),
            }
        yield proxy, env


BROKERS = ["redis", "rabbitmq"]
NAMES = {"redis": "Redis", "rabbitmq": "RabbitMQ"}


@pytest.mark.parametrize("arguments", [["workers"], ["submit", "sum", "100"]], ids=lambda a: a[0])
@pytest.mark.parametrize("broker_stack", BROKERS, indirect=True)
def test_a_broadcast_losing_the_broker_exits_3_in_one_line(
    broker_stack: Stack, request: pytest.FixtureRequest, arguments: list[str]
) -> None:
    """Before the fix, kombu's remote control reconnected for ever here (`conquer` never returned)."""
    broker = request.node.callspec.params["broker_stack"]
    with through_a_proxy(broker_stack, broker) as (proxy, env):
        began = time.monotonic()
        result = conquer(*arguments, env=env)
        elapsed = time.monotonic() - began
    assert proxy.cut.is_set(), "the broker was meant to go away at the broadcast"
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"conquer: lost {NAMES[broker]} at {mask(env['CELERY_BROKER_URL'])}: "), line
    assert elapsed < 5 + 2, elapsed  # as an unreachable broker: the 4 s reach timeout + the start-up


@pytest.mark.parametrize("broker_stack", BROKERS, indirect=True)
def test_cancel_losing_the_broker_says_what_it_did(
    broker_stack: Stack, request: pytest.FixtureRequest
) -> None:
    broker = request.node.callspec.params["broker_stack"]
    client = broker_stack.client
    # 40 chunks of 1 s on 2 processes: 20 s, far more than a CLI start under load, so the job is
    # still running when `cancel` comes (at 0.2 s a chunk, 4 s in all, it once had finished).
    job_id = client.submit(Job("download", 400, 40, latency=0.1))
    wait_until(lambda: client.status(job_id).done >= 1, 30, "the job never started")
    with through_a_proxy(broker_stack, broker) as (proxy, env):
        result = conquer("cancel", job_id, env=env)
    assert proxy.cut.is_set(), "the broker was meant to go away at the revoke"
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"conquer: lost {NAMES[broker]} at {mask(env['CELERY_BROKER_URL'])}: "), line
    assert f"job {job_id} is marked cancelled (none of its chunks starts any more)" in line
    assert "were not revoked" in line
    wait_until(lambda: client.status(job_id).over, 60, "the cancelled job never ended")
    assert client.status(job_id).state == CANCELLED


@pytest.mark.parametrize(
    ("args", "cut_on"),
    [
        (["status"], b"HGETALL"),  # the first read after the check
        (["result", "--timeout", "3"], b"HGETALL"),
        (["submit", "sum", "1e6", "--wait", "--timeout", "3"], b"BITCOUNT"),  # the job sent, then waited for
    ],
    ids=["status", "result", "submit-wait"],
)
def test_reading_a_job_losing_redis_exits_3_in_one_line(
    celery_stack: Stack, args: list[str], cut_on: bytes
) -> None:
    """Redis (broker and results) lost right after the check, or while a submitted job is waited for:
    `result` and `submit --wait` try again until their --timeout, then give up in one line."""
    client = celery_stack.client
    if args[0] != "submit":
        job_id = client.submit(Job("sum", 1000, 4))
        client.wait(job_id, 30)
        args = [args[0], job_id, *args[1:]]
    with through_a_proxy(celery_stack, "redis", cut_on) as (proxy, env):
        result = conquer(*args, env=env)
    assert proxy.cut.is_set(), f"Redis was meant to go away at {cut_on!r}"
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"conquer: lost Redis at {mask(env['CELERY_BROKER_URL'])}: "), line
    if args[0] != "status":
        assert "(gave up waiting for job " in line
