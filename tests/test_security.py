"""Secure by default, shown against real worker processes and a real Redis.

- JSON only: a pickled task message put straight into the workers' queue is refused by a worker, its
  payload never runs, and the worker goes on serving.
- No secret leaves the URL it was given in: with the broker behind a password, the password appears in
  no log, no message or key in Redis, no command on the wire but AUTH (watched with MONITOR), and no
  output of `conquer` — its errors print the URL masked. `workers.celery.settings.mask` hides any password,
  percent-encoded or not.

Already proven elsewhere, not repeated here: Flower answers 401 without its credentials
(tests/compose/test_compose_services.py, and `conquer up` in tests/conquer/test_stack_cli.py); the
compose Redis requires its password, which stays off its command line, publishes no port, and nothing
else is published beyond loopback; Redis and the image run as unprivileged users
(tests/compose/test_compose_config.py).
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import CONQUER, Stack, conquer, ctrl_c, wait_until
from tests.redis_server import redis_server
from workers.celery.app import CHUNK_TASK
from workers.celery.jobstore import SUCCESS
from workers.celery.localstack import free_port
from workers.celery.settings import ENV_BROKER, mask

# ---------------------------------------------------------------------------------- JSON only


class Payload:
    """Unpickling this object creates the file `marker`: code run by whoever deserializes it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def worker_logs(stack: Stack) -> str:
    return "".join(log.read_text(errors="replace") for log in stack.stack.directory.glob("conquer*.log"))


def test_a_pickled_task_is_refused_its_payload_never_runs_and_the_worker_serves_on(
    celery_stack: Stack, tmp_path: Path
) -> None:
    # A name of its own: the worker's log quotes the refused message's body, and in it this name.
    control, marker = tmp_path / "control", tmp_path / f"payload-ran-{secrets.token_hex(4)}"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists(), "the payload is live: unpickling it anywhere runs it"

    # A genuine Celery task message for the chunk task, only serialized with pickle, published with
    # kombu to the queue the workers consume.
    app = celery_stack.stack.app
    task_id = f"pickled-{secrets.token_hex(4)}"
    message = app.amqp.as_task_v2(task_id, CHUNK_TASK, args=(Payload(marker), None), kwargs={})
    queue = app.amqp.queues[app.conf.task_default_queue]
    with app.connection_for_write() as connection:
        connection.Producer().publish(
            message.body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            serializer="pickle",
            headers=message.headers,
            **message.properties,
        )

    # The workers take messages in order, one at a time: a job sent after it finishes only once the
    # pickled message has been taken — and refused, which the worker logs with the message's body.
    job = Job("sum", 10_000, 4)
    job_id = celery_stack.client.submit(job)
    status = celery_stack.client.wait(job_id, 60)
    assert status.state == SUCCESS
    assert status.value == check(job)
    wait_until(lambda: marker.name in worker_logs(celery_stack), 30, "no worker logged the pickled message")
    logged = worker_logs(celery_stack)
    assert "Refusing to deserialize untrusted content of type pickle" in logged
    assert "ignored and discarded" in logged
    assert not marker.exists(), "the worker deserialized the pickled payload"
    # Refused for good, not put back to be refused again.
    unacked = celery_stack.redis.hkeys(f"{celery_stack.prefix}unacked")
    queued = celery_stack.redis.lrange(f"{celery_stack.prefix}{app.conf.task_default_queue}", 0, -1)
    assert not any(task_id.encode() in raw for raw in [*unacked, *queued])


# ------------------------------------------------------------------------ no secret in the open


class Monitor:
    """Redis MONITOR on a connection of its own: every command the server runs, as raw bytes, until
    stopped."""

    def __init__(self, port: int, password: str) -> None:
        self.stream = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.stream.sendall(f"AUTH {password}\r\nMONITOR\r\n".encode())
        self.seen = bytearray()
        self.stopping = threading.Event()
        self.reader = threading.Thread(target=self._read, name="redis-monitor")
        self.stream.settimeout(0.2)
        self.reader.start()
        wait_until(lambda: self.seen.count(b"+OK\r\n") >= 2, 10, "MONITOR did not start")

    def _read(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.stream.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            self.seen += data

    def stop(self) -> bytes:
        self.stopping.set()
        self.reader.join(timeout=10)
        self.stream.close()
        return bytes(self.seen)


@contextmanager
def monitoring(port: int, password: str) -> Iterator[Monitor]:
    monitor = Monitor(port, password)
    try:
        yield monitor
    finally:
        monitor.stop()


def everything_in(connection: redis.Redis) -> bytes:
    """Every key and value in the Redis, as bytes (values read by type, never compressed)."""
    return b"\n".join(key + b"=" + repr(value_of(connection, key)).encode() for key in connection.scan_iter())


def value_of(connection: redis.Redis, key: bytes) -> object:
    kind = connection.type(key)
    if kind == b"string":
        return connection.get(key)
    if kind == b"list":
        return connection.lrange(key, 0, -1)
    if kind == b"hash":
        return connection.hgetall(key)
    if kind == b"set":
        return connection.smembers(key)
    if kind == b"zset":
        return connection.zrange(key, 0, -1)
    return kind


def test_a_password_appears_nowhere_but_where_it_was_given(tmp_path: Path) -> None:
    """A stack (`conquer up`: workers and Flower) on a Redis behind a password runs jobs; the password
    is in no log, no Redis key or command but AUTH, and no output or error of `conquer`."""
    password = secrets.token_hex(16)
    with redis_server(tmp_path, password=password) as server:
        # Every variable of this process blanked but the broker's, which carries the password.
        env = {key: "" for key in os.environ if key.startswith(("CELERY_", "CONQUER_"))}
        env[ENV_BROKER] = server.url
        masked = mask(server.url)
        assert password not in masked
        out, err = tmp_path / "up.out", tmp_path / "up.err"
        with (
            monitoring(server.port, password) as monitor,
            out.open("wb") as up_out,
            err.open("wb") as up_err,
        ):
            up = subprocess.Popen(
                [CONQUER, "up", "--workers", "1", "--flower-port", str(free_port())],
                stdout=up_out,
                stderr=up_err,
                env={**os.environ, **env},
                start_new_session=True,
            )
            try:
                wait_until(
                    lambda: b"Press Ctrl-C" in out.read_bytes(), 90, f"`conquer up` did not start: {err}"
                )
                logs = Path(out.read_text().split("logs", 1)[1].split()[0]).parent
                job_id, outputs = run_jobs_and_errors(env, server.port, masked)
                # What the stack logged, read before `up` removes its directory on the way out.
                logged = "".join(log.read_text(errors="replace") for log in logs.glob("*.log"))
            finally:
                ctrl_c(up, timeout=60)
            assert up.returncode == ExitCode.OK, err.read_text()
            stored = everything_in(server.client())
        wire = monitor.seen.decode(errors="replace")
    printed = out.read_text() + err.read_text()

    # Each place was looked at for real: it holds the job's traces, or the URL masked.
    assert "redis://:**@127.0.0.1" in logged or masked in logged, logged  # Flower and Celery mask it too
    assert job_id in wire
    # The clients did authenticate while it watched: the password's one crossing, which Redis redacts.
    assert '"AUTH" "(redacted)"' in wire
    assert "LPUSH" in wire.upper()
    assert job_id.encode() in stored
    assert masked in printed
    for place, text in [
        ("the stack's logs", logged),
        ("`conquer up`'s output", printed),
        ("Redis MONITOR", wire),
        ("Redis keys", stored.decode(errors="replace")),
        *outputs,
    ]:
        assert password not in text, f"the password appears in {place}"


def run_jobs_and_errors(env: dict[str, str], port: int, masked: str) -> tuple[str, list[tuple[str, str]]]:
    """Through the CLI: a job, a failing job, status/result/workers/cancel as JSON, an unknown id and
    a wrong password. Returns the job's id and every output, with what printed it."""

    def run(*args: str, expect: int, url: str | None = None) -> str:
        result = conquer(*args, env={**env, ENV_BROKER: url} if url else env)
        assert result.returncode == expect, f"conquer {' '.join(args)}: {result.stderr}"
        return result.stdout + result.stderr

    submitted = run("submit", "primes", "20000", "--chunks", "4", "--wait", "--json", expect=ExitCode.OK)
    job_id = str(json.loads(submitted)["id"])
    failed = run(
        "submit", "sum", "1000", "--chunks", "4", "--fail-at", "600", "--wait", expect=ExitCode.JOB_FAILED
    )
    unknown = run("status", "0123456789abcdef", expect=ExitCode.UNKNOWN_JOB)
    assert masked in unknown, unknown  # the error names the broker, masked
    wrong = secrets.token_hex(16)
    refused = run(
        "status", job_id, expect=ExitCode.BROKER_UNREACHABLE, url=f"redis://:{wrong}@127.0.0.1:{port}/0"
    )
    assert f"redis://:***@127.0.0.1:{port}/0" in refused, refused
    assert wrong not in refused, refused
    texts = [
        ("submit --wait --json", submitted),
        ("a failing job's error", failed),
        ("status --json", run("status", job_id, "--json", expect=ExitCode.OK)),
        ("result --json", run("result", job_id, "--json", expect=ExitCode.OK)),
        ("workers --json", run("workers", "--json", expect=ExitCode.OK)),
        ("cancel", run("cancel", job_id, expect=ExitCode.OK)),
        ("an unknown job's error", unknown),
        ("a wrong password's error", refused),
    ]
    return job_id, texts


# ------------------------------------------------------------------------------------- mask()

SECRET = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=12)
#: Anything a password may hold, the characters that end a URL's parts (@ : / ? # %) most of all.
ANY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


@settings(max_examples=300, derandomize=True, database=None)
@given(
    first=SECRET,
    middle=ANY | st.text("@:/?#%&=", max_size=4),
    last=SECRET,
    user=st.sampled_from(["", "user", "conquer"]),
    scheme=st.sampled_from(["redis://", "rediss://", "amqp://", ""]),
    location=st.sampled_from(["redis:6379/0", "10.0.0.1/2", "[::1]:6380/0?ssl_cert_reqs=required", "host"]),
    encoded=st.booleans(),
)
def test_mask_hides_any_password_encoded_or_not(
    first: str, middle: str, last: str, user: str, scheme: str, location: str, encoded: bool
) -> None:
    password = first + middle + last
    written = quote(password, safe="") if encoded else password
    url = f"{scheme}{user}:{written}@{location}"
    shown = mask(url)
    assert first not in shown, (url, shown)
    assert last not in shown, (url, shown)
    assert shown.endswith(f"{user}:***@{location}"), (url, shown)


def test_mask_hides_a_password_given_as_a_query_parameter() -> None:
    assert mask("redis://host:6379/0?password=s3cret&db=1") == "redis://host:6379/0?password=***&db=1"


def test_the_monitor_would_see_a_password_sent_as_data(tmp_path: Path) -> None:
    """The MONITOR check above can fail: a password written as data shows on the wire."""
    password = secrets.token_hex(16)
    with redis_server(tmp_path, password=password) as server:
        with monitoring(server.port, password) as monitor:
            client = server.client()
            try:
                client.set("leak", password)
                wait_until(lambda: b"leak" in monitor.seen, 10, "MONITOR missed the SET")
            finally:
                client.close()
        assert password.encode() in monitor.seen
