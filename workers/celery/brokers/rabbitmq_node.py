"""Run a private RabbitMQ node: start it, wait for a login, stop it (cleanly or as a crash), start it
again on the same data, and close it with every process it started — its epmd included.

The node itself is what `rabbitmq.server_command` sets up in a 0700 directory: its own name, ports,
data, logs, Erlang cookie, user and epmd; nothing on a shared RabbitMQ is touched. `conquer run --on
celery --broker rabbitmq` runs one as the broker of its embedded stack (`workers.celery.localstack`);
the tests and the drills that stop a broker run theirs (`tests.rabbitmq_server`).

Measured start, process started -> AMQP login accepted: 6.8-11.5 s on the 2-core VM at load 3-10 (the
Erlang VM boots, then RabbitMQ's own boot steps take about 5 s); a restart on the same data, stop
included, 4.9-11.3 s. Hence one node per stack, started once and shared by every run that uses it.

Usage::

    with rabbitmq_node(directory) as node:   # started; closed on the way out, whatever happened
        run_things_against(node.url)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from workers.celery.brokers import rabbitmq

#: How long a starting node may take to accept a login: five times the 6.8-11.5 s measured.
START_DEADLINE_S = 60
#: How long a node gets to stop cleanly (SIGTERM: RabbitMQ's own shutdown) before SIGKILL.
STOP_GRACE_S = 15

#: The node's parent, a small Python process between the caller and RabbitMQ's server script. It
#: - is a child subreaper (prctl): every minute RabbitMQ re-checks its epmd by starting an `erl`, which
#:   starts an `epmd -daemon` that exits at once (the port is taken), and the first such epmd stays
#:   as the node's daemon. Both daemonize, orphaning themselves; reparented here rather than to init
#:   (or to a subreaper caller such as pytest, tests/conftest.py, which on a loaded machine would see
#:   them alive as leftovers), they are reaped here, by the node's own process;
#: - gets SIGTERM should the caller die, however it dies (PR_SET_PDEATHSIG), and passes it on to the
#:   script, which traps it and stops RabbitMQ cleanly; SIGKILL to all it has left after `grace` s;
#: - once the script has exited, ends what is left of its descendants — the node's epmd above all,
#:   which has left the node's session and would otherwise outlive everything — and exits with the
#:   script's status. So a `conquer` killed outright leaves no Erlang process behind.
#: argv: the caller's pid (the caller may die before prctl: then no signal would ever come), the
#: grace in seconds, the command.
NODE_PARENT = """
import ctypes, os, signal, sys
import psutil
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
caller, grace, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]

def descendants():
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []

def kill_all(signum, frame=None):
    for process in descendants():
        try:
            process.send_signal(signum)
        except psutil.Error:
            pass

def on_term(signum, frame):
    if script > 0:
        try:
            os.kill(script, signal.SIGTERM)
        except ProcessLookupError:
            pass
    signal.alarm(grace)  # then SIGKILL, whatever still runs

script = -1
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, who stops the node in order
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGALRM, lambda signum, frame: kill_all(signal.SIGKILL))
script = os.fork()
if script == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execvp(command[0], command)
if os.getppid() != caller:
    on_term(signal.SIGTERM, None)
status = 1
while True:
    try:
        pid, code = os.waitpid(-1, 0)  # reaps the script, and every orphan reparented here
    except ChildProcessError:
        break
    if pid == script:
        status = os.waitstatus_to_exitcode(code)
        kill_all(signal.SIGTERM)
        psutil.wait_procs(descendants(), timeout=5)
        kill_all(signal.SIGKILL)
sys.exit(status if status >= 0 else 128 - status)
"""


@dataclass
class RabbitMQNode:
    """One private node in `directory`; `command` and `url` as `rabbitmq.server_command` made them."""

    directory: Path
    command: list[str]
    url: str = field(repr=False)  # holds the node's password
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: Seconds the last start took, process started -> login accepted.
    start_s: float = 0.0

    def start(self, deadline_s: float = START_DEADLINE_S) -> None:
        """Start the node (again, on the same ports and data) and wait until it accepts a login; raise
        RuntimeError (one line, the log's last lines) if it does not within `deadline_s`."""
        began = time.monotonic()
        # The node's parent leads a session of its own (signalled as a group by `stop`), so the
        # script's own `setsid` is left out: it would take the script out of that session.
        command = self.command[1:] if self.command[0] == "setsid" else self.command
        with (self.directory / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", NODE_PARENT, str(os.getpid()), str(STOP_GRACE_S), *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,  # where an Erlang VM that crashes writes erl_crash.dump: not the user's
            )
        deadline = began + deadline_s
        while True:
            try:
                rabbitmq.ping(self.url, timeout=2)
                break
            except rabbitmq.errors():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"private RabbitMQ did not start: {self.log_tail()}") from None
                time.sleep(0.1)
        self.start_s = time.monotonic() - began

    def node_processes(self) -> list[psutil.Process]:
        """The node's processes: its session (its parent, the script, the Erlang VM: the parent's pid
        is the session id) and the VM's helpers (erl_child_setup, inet_gethost)."""
        if self.process is None:
            return []
        found = []
        for process in psutil.process_iter():
            with suppress(psutil.Error, ProcessLookupError):
                if os.getsid(process.pid) == self.process.pid:
                    found.append(process)
                    found.extend(process.children(recursive=True))
        return list({process.pid: process for process in found}.values())

    def epmd(self) -> list[psutil.Process]:
        """The epmd this node started (on its private port), if it runs."""
        port = str(rabbitmq.epmd_port(self.directory))
        found = []
        for process in psutil.process_iter(["name"]):
            with suppress(psutil.Error):
                if process.info["name"] == "epmd" and process.environ().get("ERL_EPMD_PORT") == port:
                    found.append(process)
        return found

    def processes(self) -> list[psutil.Process]:
        """Every process of the node, its epmd included."""
        return [*self.node_processes(), *self.epmd()]

    def pids(self) -> set[int]:
        return {process.pid for process in self.processes()}

    def stop(self, *, crash: bool = False) -> None:
        """Stop the node: SIGTERM to its group (RabbitMQ shuts down cleanly, then its parent ends the
        epmd), SIGKILL after the grace; with `crash`, SIGKILL at once — the epmd then stays (the next
        start uses it; `close` ends it)."""
        if self.process is None:
            return
        processes = self.node_processes()
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=0 if crash else STOP_GRACE_S)
        for process in alive:
            with suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, crash: bool = False) -> None:
        self.stop(crash=crash)
        self.start()

    def close(self) -> None:
        """Stop the node, and end its epmd if it outlived it (after a crash); reap it if it was
        reparented here (a subreaper caller, such as pytest)."""
        self.stop()
        daemons = self.epmd()
        for process in daemons:
            with suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(daemons, timeout=5)
        for process in alive:
            with suppress(psutil.Error):
                process.kill()
        for process in daemons:
            with suppress(ChildProcessError, OSError):
                os.waitpid(process.pid, os.WNOHANG)

    def log_tail(self, lines: int = 5) -> str:
        logs = sorted((self.directory / "log").glob("*.log")) or [self.directory / "server.out"]
        text = logs[0].read_text(errors="replace").splitlines() if logs[0].exists() else []
        return " | ".join(text[-lines:]) or "(no log)"


def make_node(directory: Path) -> RabbitMQNode:
    """A node set up in `directory` (made 0700), not started. RuntimeError (one line, what to install)
    where there is no rabbitmq-server to run."""
    directory.chmod(0o700)
    command, url = rabbitmq.server_command(directory)
    return RabbitMQNode(directory, command, url)


@contextmanager
def rabbitmq_node(directory: Path, *, started: bool = True) -> Iterator[RabbitMQNode]:
    """A private RabbitMQ node in `directory`, closed on the way out whatever happened."""
    node = make_node(directory)
    try:
        if started:
            node.start()
        yield node
    finally:
        node.close()


def leftovers(pids: set[int]) -> list[str]:
    """Which of `pids` (a node's former processes) still run; zombies are gone, only owed a status."""
    left = []
    for pid in pids:
        with suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {process.name()}")
    return left
