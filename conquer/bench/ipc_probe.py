"""In-host round trips: one chunk out to a live worker process and its result back, over a `Pipe`, a
pair of `multiprocessing.Queue`s, or a `Manager` server's queues.

The worker runs the very loop the executors use (`mp_pipe.work`, `mp_queue.work`), and the messages are
the executors' own (`Chunk` out, `ChunkResult` back), so a round trip here is what each chunk of a real
run pays for messaging. The worker is started, and one round trip made, before the clock starts:
process start-up is measured by the `startup` series, not here. Every reply is checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from multiprocessing.managers import SyncManager
from typing import Any

from tasks import Chunk
from workers.base import ChunkResult
from workers.processes import mp_pipe, mp_queue
from workers.processes.supervise import ctrl_c_held, get_context, ignore_sigint, stop

#: A reply that takes longer than this means the worker is gone or stuck, not slow.
REPLY_DEADLINE_S = 10.0

RoundTrip = Callable[[Chunk], object]


class ProbeError(RuntimeError):
    """A probe got no reply, or a wrong one (the message says which)."""


def probe_chunk(number: int) -> Chunk:
    """A one-item chunk of `sum` whose answer is `number` itself."""
    return Chunk("sum", number, number, number + 1)


@contextmanager
def pipe_echo(start_method: str) -> Iterator[RoundTrip]:
    context = get_context(start_method)
    parent, child = context.Pipe()
    process = context.Process(target=mp_pipe.work, args=(child,), name="probe-pipe-worker", daemon=True)
    with ctrl_c_held(start_method):
        process.start()
    child.close()

    def round_trip(chunk: Chunk) -> object:
        parent.send(chunk)
        if not parent.poll(REPLY_DEADLINE_S):
            raise ProbeError(f"no reply over the pipe in {REPLY_DEADLINE_S:g} s")
        return parent.recv()

    try:
        yield round_trip
    finally:
        parent.close()  # the worker sees EOF and returns
        stop([process])


def through_queues(todo: Any, done: Any) -> RoundTrip:
    """A round trip over a pair of queues (multiprocessing's, or a manager's proxies of them)."""

    def round_trip(chunk: Chunk) -> object:
        todo.put(chunk)
        return done.get(timeout=REPLY_DEADLINE_S)

    return round_trip


@contextmanager
def queue_echo(start_method: str) -> Iterator[RoundTrip]:
    context = get_context(start_method)
    todo, done = context.Queue(), context.Queue()
    process = context.Process(target=mp_queue.work, args=(todo, done), name="probe-queue-worker", daemon=True)
    with ctrl_c_held(start_method):
        process.start()
    try:
        yield through_queues(todo, done)
    finally:
        stop([process])  # it waits in get(): terminated, as a sentinel put after a Ctrl-C could hang
        todo.cancel_join_thread()


@contextmanager
def manager_echo(start_method: str) -> Iterator[RoundTrip]:
    context = get_context(start_method)
    manager = SyncManager(ctx=context)
    with ctrl_c_held(start_method):  # see workers.processes.mp_manager
        manager.start(ignore_sigint)
    try:
        # Proxies of queues in the manager's server process: every put and get is a request over a
        # socket to that process, as every broker operation is a request to Redis.
        todo, done = manager.Queue(), manager.Queue()
        process = context.Process(
            target=mp_queue.work, args=(todo, done), name="probe-manager-worker", daemon=True
        )
        with ctrl_c_held(start_method):
            process.start()
        try:
            yield through_queues(todo, done)
        finally:
            stop([process])
    finally:
        manager.shutdown()


ECHOES: dict[str, Callable[[str], AbstractContextManager[RoundTrip]]] = {
    "pipe": pipe_echo,
    "queue": queue_echo,
    "manager": manager_echo,
}


def check(outcome: object, chunk: Chunk) -> None:
    if not isinstance(outcome, ChunkResult) or outcome.value != chunk.start:
        raise ProbeError(f"wrong reply to {chunk.describe()}: {outcome!r}")


def mean_round_trip(round_trip: RoundTrip, count: int, first: int) -> float:
    """Seconds per round trip over `count` consecutive ones, each reply checked."""
    began = time.perf_counter()
    for number in range(first, first + count):
        chunk = probe_chunk(number)
        check(round_trip(chunk), chunk)
    return (time.perf_counter() - began) / count


def measure(mechanism: str, start_method: str, count: int, repeats: int) -> list[float]:
    """`repeats` samples, each the mean of `count` round trips, through one live worker."""
    with ECHOES[mechanism](start_method) as round_trip:
        warm_up = probe_chunk(0)
        check(round_trip(warm_up), warm_up)
        return [mean_round_trip(round_trip, count, 1 + repeat * count) for repeat in range(repeats)]
