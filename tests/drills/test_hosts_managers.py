"""The `managers` heartbeat without namespaces (so it runs anywhere, root or not): a worker frozen by
SIGSTOP mid-chunk is alive, keeps its connections open and says nothing — to the server, the same as
a worker whose host was cut off. The run must fail at once with one line naming it, as across hosts
(`test_hosts.py`), and a worker that leaves cleanly must not count as lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tasks import Job, check
from workers import WorkerLost
from workers.base import ChunkResult
from workers.managers import AUTHKEY_ENV, BEAT_S, LOST_AFTER_S, run_remote

#: 6 chunks of 1 s on 2 workers.
JOB = Job("download", 30, 6, latency=0.2)

#: As in test_hosts.py: loss time + one beat + the parent's poll (0.2 s) + 1.5 s for a loaded machine
#: (measured there: 1.61-2.29 s over 40 runs across hosts; here 1.81-2.21 s in 6 runs at load 1.6-4).
BOUND_S = LOST_AFTER_S + BEAT_S + 0.2 + 1.5

Launch = Callable[[tuple[str, int], bytes], None]


@contextmanager
def workers_by_hand(names: list[str]) -> Iterator[tuple[list[subprocess.Popen[bytes]], Launch]]:
    """A `launch` for run_remote starting `python -m workers.managers worker` per name; all killed after."""
    started: list[subprocess.Popen[bytes]] = []

    def launch(address: tuple[str, int], authkey: bytes) -> None:
        for name in names:
            command = [sys.executable, "-m", "workers.managers", "worker", f"{address[0]}:{address[1]}"]
            started.append(
                subprocess.Popen(
                    [*command, "--name", name],
                    env={**os.environ, AUTHKEY_ENV: authkey.hex()},
                    stdout=subprocess.DEVNULL,
                )
            )

    try:
        yield started, launch
    finally:
        for process in started:
            process.kill()  # SIGKILL reaches a stopped process too
            process.wait(10)


def test_a_frozen_worker_is_declared_lost_by_name_within_the_heartbeat_bound() -> None:
    frozen: list[float] = []
    with workers_by_hand(["alpha", "beta"]) as (started, launch):

        def freeze_alpha(result: ChunkResult) -> None:
            if not frozen:
                os.kill(started[0].pid, signal.SIGSTOP)
                frozen.append(time.monotonic())

        with pytest.raises(WorkerLost) as raised:
            run_remote(JOB, host="127.0.0.1", workers=2, launch=launch, progress=freeze_alpha)
        lost_s = time.monotonic() - frozen[0]
    message = str(raised.value)
    print(f"\n[managers, SIGSTOP] WorkerLost {lost_s:.2f} s after the freeze: {message}")
    assert "\n" not in message
    assert message.startswith("worker alpha lost: no heartbeat for ")
    assert lost_s <= BOUND_S


def test_workers_that_leave_cleanly_are_not_lost() -> None:
    """Each worker removes its name when told to stop: the run ends with the exact answer even when one
    worker is done long before the other (here, one of the two gets nothing at all)."""
    job = Job("download", 4, 1, latency=1.0)  # 4 s: twice the loss time
    with workers_by_hand(["alpha", "beta"]) as (_, launch):
        report = run_remote(job, host="127.0.0.1", workers=2, launch=launch)
    assert report.value == check(job)
    assert report.details["heartbeat"] == "every 0.5 s, lost after 2 s without one"
