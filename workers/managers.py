"""Managers: the standard library's home-made distribution — a task queue and a result queue served over
TCP by a `multiprocessing.managers.BaseManager`, and workers that connect to it by address and key.

This is where the processes-and-threads chapter ends: the same `Manager` machinery as
`workers.processes.mp_manager`, but the workers are given nothing except the server's (host, port) and its
authkey, exactly what a worker on another machine would be given. The parent starts a server process
holding two `queue.Queue`s on 127.0.0.1 and a free port, with a random 32-byte authkey; it puts every
chunk's range on `todo` (JSON-safe dicts: ranges, never data), starts the workers, and reads `done`.

What it does not do is what a broker adds (see ``conquer demo managers``): the queues live in one
process's memory, so a chunk taken by a worker that then dies is simply gone (the run fails with
WorkerLost instead of hanging — there is no redelivery). A worker on another host can also vanish
without dying — its link cut, nothing ever closing its connection — so every worker beats (a
counter on the server, every BEAT_S) and one silent for LOST_AFTER_S is declared lost
(`Heartbeats`). Nothing survives the server; nobody can watch; and there is one producer per server.
The authkey authenticates peers (HMAC challenge) but does not encrypt, and a manager speaks pickle,
so whoever holds the key can make the server run code: hence a fresh random key per run, never
printed, and a server on loopback only (`run_remote`: on the address given). Across real machines,
use a trusted network or an SSH tunnel.

Usage::

    conquer run sum 10_000_000 --on managers -v
    conquer compare sum 1e7 --executors managers,processes
    # a worker joining a server by address, as one on another machine would (the key comes from the
    # environment, never the command line, where `ps` would show it):
    CONQUER_MANAGER_AUTHKEY=<hex> python -m workers.managers worker 127.0.0.1:50000 --name host2

    run_remote(job, host="10.0.0.1", workers=2, launch=start_them)  # workers started elsewhere
"""

from __future__ import annotations

import argparse
import multiprocessing.managers
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from multiprocessing.managers import BaseManager, DictProxy
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from tasks import Chunk, Job, split
from workers.base import ChunkResult, Executor, OnChunk, Report, WorkerLost, attempt, make_report
from workers.processes.supervise import (
    POLL_S,
    Channel,
    Outcome,
    WorkerTarget,
    accept,
    ctrl_c_held,
    drain,
    get_context,
    ignore_sigint,
    sigterm_as_interrupt,
    supervise,
)

#: Where a worker started by hand finds the server's authkey (hex).
AUTHKEY_ENV = "CONQUER_MANAGER_AUTHKEY"

Address = tuple[str, int]

#: How often a worker beats: it bumps its counter in the server's `beats` dict, over a connection of
#: its own (a thread's), whatever its chunk is doing.
BEAT_S = 0.5

#: A worker whose counter has not moved for this long is lost: four beats missed. A beat is one small
#: request on a connection of its own, so a live worker misses four only if its host is down or cut
#: off (or the machine stalls a process for 2 s, which a 2-core VM at load 10 has not done here).
LOST_AFTER_S = 2.0

#: How long workers started elsewhere (`run_remote`) get to join the server before the run gives up.
JOIN_S = 60.0

#: The server's shared objects, created in the server process by `_serve` (each run gets a fresh server).
_queues: dict[str, queue.Queue[Any]] = {}
_beats: dict[str, int] = {}


def _serve() -> None:
    """Runs first in the server process: Ctrl-C is the parent's business, and the queues are born here."""
    ignore_sigint()
    _queues["todo"] = queue.Queue()
    _queues["done"] = queue.Queue()
    _beats.clear()


def _todo() -> queue.Queue[Any]:
    return _queues["todo"]


def _done() -> queue.Queue[Any]:
    return _queues["done"]


def _beats_dict() -> dict[str, int]:
    return _beats


def _client_without_nagle(
    address: Any, family: str | None = None, authkey: bytes | None = None
) -> Connection:
    """`multiprocessing.connection.Client`, with Nagle's algorithm turned off on TCP connections.

    multiprocessing leaves Nagle on. A manager client ends its authentication handshake with a small
    write and then sends its first request — write, write, read — so the kernel holds the request back
    until the server ACKs the handshake, and the server delays that ACK (40 ms on Linux). Every
    connection a proxy opens paid it: a 16-chunk run took 0.9 s, 0.08 s with TCP_NODELAY.
    """
    connection = Client(address, family, authkey)
    if isinstance(address, tuple):
        with socket.fromfd(connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as duplicate:
            duplicate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # applies to the shared socket
    return connection


#: The manager's and its proxies' "serializer": pickle, as the default, over connections without Nagle.
#: Registered under a new name so multiprocessing's own managers are left as they are.
SERIALIZER = "pickle-nodelay"
multiprocessing.managers.listener_client[SERIALIZER] = (Listener, _client_without_nagle)  # type: ignore[attr-defined]


class JobQueues(BaseManager):
    """A manager serving `todo` (chunk messages, then one None per worker) and `done` (results).

    The same class serves (in the server process, where the callables run) and connects (in workers,
    which only need the names)."""

    todo: Callable[[], queue.Queue[dict[str, Any] | None]]
    done: Callable[[], queue.Queue[Any]]
    #: Worker name -> its heartbeat counter; a worker that leaves cleanly removes its name.
    beats: Callable[[], dict[str, int]]


JobQueues.register("todo", callable=_todo)
JobQueues.register("done", callable=_done)
JobQueues.register("beats", callable=_beats_dict, proxytype=DictProxy)


def work(address: Address, authkey: bytes, name: str | None = None) -> None:
    """A worker: connect to the server at `address`, take ranges off `todo` until None, answer on
    `done`, and beat under `name` (default: host:pid) meanwhile."""
    manager = JobQueues(address=address, authkey=authkey, serializer=SERIALIZER)
    try:
        manager.connect()
        todo, done = manager.todo(), manager.done()
        with beating(manager.beats(), name or f"{socket.gethostname()}:{os.getpid()}"):
            while (message := todo.get()) is not None:
                done.put(attempt(Chunk.from_message(message)))
    except (EOFError, ConnectionError):
        return  # the server went away: the run is over, and its parent says why


@contextmanager
def beating(beats: dict[str, int], name: str) -> Iterator[None]:
    """Meanwhile, bump `beats[name]` every BEAT_S from a thread (a proxy opens one connection per
    thread, so the beats never queue behind a chunk's result); on a clean exit, remove the name: a
    worker that has left is not lost."""
    stop = threading.Event()

    def beat() -> None:
        count = 0
        try:
            while True:
                beats[name] = count = count + 1
                if stop.wait(BEAT_S):
                    return
        except (EOFError, ConnectionError, OSError):
            return  # the server went away

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(LOST_AFTER_S)
    beats.pop(name, None)


def _local_worker(address: Address, authkey: bytes) -> None:
    ignore_sigint()  # Ctrl-C is for the parent, which stops its workers itself
    work(address, authkey, multiprocessing.current_process().name)


class Heartbeats:
    """The parent's watch on the workers' beats. Invariant: a worker that joined and has not left is
    either beating or declared lost within LOST_AFTER_S (+ BEAT_S + POLL_S) of its last beat that
    arrived. Without it, a worker cut off from the server — alive, its connection never closed, the
    chunk it took never coming back, since these queues have no redelivery — would keep the run
    waiting forever. Ages are measured on this process's clock (when a counter was seen to move),
    never compared with another host's."""

    def __init__(self, beats: dict[str, int]) -> None:
        self.beats = beats
        self.seen: dict[str, tuple[int, float]] = {}  # name -> (counter, when it was seen to move)

    def joined(self) -> bool:
        return bool(self.seen)

    def check(self) -> None:
        """Raise WorkerLost naming the first worker silent for LOST_AFTER_S."""
        now = time.monotonic()
        current = self.beats.copy()  # through the proxy: a plain dict, one round trip
        for name, count in current.items():
            if self.seen.get(name, (None, 0.0))[0] != count:
                self.seen[name] = (count, now)
        for name, (_, moved) in self.seen.items():
            if name in current and now - moved > LOST_AFTER_S:
                raise WorkerLost(
                    f"worker {name} lost: no heartbeat for {now - moved:.1f} s (its host is down or cut "
                    f"off), and the chunk it took has no way back (no redelivery)"
                )


@contextmanager
def serving(context: Any, host: str = "127.0.0.1") -> Iterator[tuple[JobQueues, bytes]]:
    """Start a queue server on `host` and a free port with a fresh random authkey; shut it down after."""
    authkey = secrets.token_bytes(32)
    manager = JobQueues(address=(host, 0), authkey=authkey, serializer=SERIALIZER, ctx=context)
    with ctrl_c_held(context.get_start_method()):
        manager.start(_serve)
    try:
        yield manager, authkey
    finally:
        manager.shutdown()


class ServerQueues(Channel):
    """The server's two queues, reached through proxies; the workers get only its address and key."""

    def __init__(self, manager: JobQueues, authkey: bytes, job: Job, workers: int) -> None:
        self.address: Address = manager.address  # type: ignore[assignment]  # the port the OS picked
        self.authkey = authkey
        self.chunks = job.chunks
        self.received = 0
        with self.answering():
            self.todo, self.done = manager.todo(), manager.done()
            self.heartbeats = Heartbeats(manager.beats())
            for chunk in split(job):
                self.todo.put(chunk.to_message())
            for _ in range(workers):
                self.todo.put(None)

    def worker(self, number: int) -> WorkerTarget:
        # The address and the key, nothing else: no inherited queue, no proxy.
        return _local_worker, (self.address, self.authkey)

    def collect(self, processes: Sequence[BaseProcess], timeout: float) -> list[Outcome]:
        with self.answering():
            outcomes = drain(self.done, timeout)
            self.received += len(outcomes)
            if self.received < self.chunks:  # a worker lost once all is in has lost nothing
                self.heartbeats.check()
            return outcomes

    @contextmanager
    def answering(self) -> Iterator[None]:
        """A server that stops answering ends the run with WorkerLost naming it."""
        try:
            yield
        except (EOFError, ConnectionError) as error:
            server = _text(self.address)
            raise WorkerLost(f"the manager server at {server} stopped answering: {error!r}") from None

    def details(self) -> dict[str, Any]:
        return {
            "address": _text(self.address),
            "authkey": "32 random bytes, never shown",
            "heartbeat": f"every {BEAT_S:g} s, lost after {LOST_AFTER_S:g} s without one",
        }


@contextmanager
def _open_channel(context: Any, job: Job, workers: int) -> Iterator[Channel]:
    with serving(context) as (manager, authkey):
        yield ServerQueues(manager, authkey, job, workers)


def run(job: Job, *, workers: int, progress: OnChunk | None = None) -> Report:
    from workers import default_start_method

    return supervise(
        job,
        _open_channel,
        workers=workers,
        start_method=default_start_method(),
        progress=progress,
        executor="managers",
    )


def run_remote(
    job: Job,
    *,
    host: str,
    workers: int,
    launch: Callable[[Address, bytes], None],
    progress: OnChunk | None = None,
) -> Report:
    """Run `job` on `workers` workers that join from other hosts: the server listens on `host` (an
    address they reach), `launch(address, authkey)` starts them there (`python -m workers.managers
    worker`; `conquer.hosts` starts them in network namespaces), and they are watched through their
    heartbeats alone — the one sign of life a worker on another machine gives. The channel is the
    one `run` uses; what `supervise` adds for local workers (exit codes, stopping them) has no
    meaning for processes on another host."""
    from workers import default_start_method

    context = get_context(default_start_method())
    results: list[ChunkResult] = []
    began = time.perf_counter()
    with sigterm_as_interrupt(), serving(context, host) as (manager, authkey):
        channel = ServerQueues(manager, authkey, job, workers)
        launch(channel.address, authkey)
        join_by = time.monotonic() + JOIN_S
        while len(results) < job.chunks:
            for outcome in channel.collect((), POLL_S):
                accept(outcome, results, progress)
            if not channel.heartbeats.joined() and time.monotonic() > join_by:
                raise WorkerLost(f"no worker joined the server at {_text(channel.address)} in {JOIN_S:g} s")
        details = channel.details()
    return make_report(
        job, "managers", results, time.perf_counter() - began, workers=workers, details=details
    )


def _text(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.managers",
        description=f"Join a managers server as a worker. The authkey (hex) is read from ${AUTHKEY_ENV}.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="take chunks from the server at HOST:PORT until told to stop")
    worker.add_argument("address", type=parse_address, metavar="HOST:PORT")
    worker.add_argument("--name", help="its name in heartbeats and messages (default: host:pid)")
    arguments = parser.parse_args(argv)
    key = os.environ.get(AUTHKEY_ENV)
    if not key:
        parser.error(f"set {AUTHKEY_ENV} to the server's authkey (hex)")
    try:
        authkey = bytes.fromhex(key)
    except ValueError:
        parser.error(f"{AUTHKEY_ENV} is not hex")
    print(
        f"worker pid {os.getpid()} on {socket.gethostname()} joining {_text(arguments.address)}", flush=True
    )
    # SIGTERM from whoever started us ends the worker like Ctrl-C would end a foreground one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        work(arguments.address, authkey, arguments.name)
    except AuthenticationError:
        print(f"the server at {_text(arguments.address)} rejected the authkey", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import managers as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Executor = this


if __name__ == "__main__":
    raise SystemExit(main())
