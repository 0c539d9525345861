"""The peak memory of a process and everything it starts: the sum of their PSS, sampled.

RSS counts every page a process has mapped, shared or not: a forked worker's RSS includes all the
parent's pages it still shares, so adding up RSS counts them again for every worker. PSS (proportional
set size) splits each shared page between the processes sharing it, so the PSS of a process tree adds
up to the memory the tree really holds. The kernel keeps no peak of it, so it is sampled; `ru_maxrss`
(exact peaks, per process) is reported next to it by the measured program itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psutil

INTERVAL_S = 0.02


def tree_pss(root: psutil.Process) -> int:
    """Bytes of PSS of `root` and all its descendants right now (processes that just exited count 0)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            total += process.memory_full_info().pss
    return total


class PeakSampler:
    """Samples `tree_pss(pid)` every INTERVAL_S in a thread of its own, from `start()` to `stop()`."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peak = max(self.peak, tree_pss(self.root))
            self._stop.wait(INTERVAL_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@contextlib.contextmanager
def sampling(pid: int) -> Iterator[PeakSampler]:
    sampler = PeakSampler(pid)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
