"""What one timed run used, and what else the machine did meanwhile: the facts every timed row carries.

A `Meter` is started just before a run and stopped just after it. It gives a `Sample`:

- `cpu_s`: CPU time (user + system) of the run's process tree. This process, every thread of it
  (getrusage RUSAGE_SELF); the children it reaped during the run (RUSAGE_CHILDREN: every in-host
  executor joins its workers before it returns); and each descendant still alive at either end — a
  Celery stack's worker, its pool processes and its Redis, a fork server — read from /proc with
  psutil, each with the children *it* reaped. A descendant that was alive before and gone after has
  its whole life counted by whoever reaped it, so its time before the run is taken off again. The
  processes of another deployment (an idle Celery stack kept for a later row) are left out: they are
  not this run's, and count as other load. Where the work runs outside this tree (Celery through an
  external broker) there is no such figure: `cpu_s` is None, never a guess.
- `steal_s`: CPU time the hypervisor took from this VM's CPUs during the run (/proc/stat, all CPUs).
- `other_cpu_s`: CPU time the machine spent on anything outside the run's tree during the run (busy
  time from /proc/stat minus `cpu_s`): the neighbours a VM's steal does not show.
- `window_s`: how long the meter ran (the run plus the executor's bookkeeping around its timed part:
  combining the partials, checking the answer), the time the three figures above are counted over.
- `load_1m`: the 1-minute load average at the end of the run. Recorded, not judged: a trailing average
  that also counts this run's own workers.
- `resolution_s`: how far `steal_s` and `other_cpu_s` can be off, at most: /proc counts whole ticks
  (1/USER_HZ s), one per field read twice, and psutil reads four fields per live descendant.
- `gil_enabled`: whether the GIL was on in this process just after the run (`sys._is_gil_enabled()`;
  always on in a GIL build). Read after, not before: an extension module imported during the run can
  switch a free-threaded build's GIL back on. None in a sample made elsewhere that did not say.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from conquer import machine
from workers import Deployed

#: A process, told apart from a later one that reuses its pid: (pid, creation time).
Key = tuple[int, float]
#: Tick-counted fields psutil reads per process: user, system, and its reaped children's user, system.
FIELDS_PER_PROCESS = 4


@dataclass(frozen=True, slots=True)
class Sample:
    wall_s: float
    cpu_s: float | None
    steal_s: float | None
    other_cpu_s: float | None
    window_s: float
    load_1m: float | None
    resolution_s: float
    gil_enabled: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployed_processes(deployed: Deployed) -> list[int] | None:
    """The pids of the processes a deployment started (their subtrees do a run's work), [] when it
    started none, or None when its work runs outside this process tree (an external broker)."""
    target = deployed.options.get("deployment")
    if target is None:
        return []
    stack = getattr(target, "stack", None)
    if stack is None:
        return None
    return [process.pid for process in stack.processes]


def own_cpu() -> float:
    """User + system seconds of this process and of the children it has reaped."""
    me, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime


def descendants(exclude: Collection[int]) -> dict[Key, tuple[float, float]]:
    """Each live descendant of this process outside the subtrees of `exclude`: (its own CPU seconds,
    the CPU seconds of the children it reaped)."""
    skipped = set(exclude)
    for pid in exclude:
        try:
            skipped.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue  # gone: nothing of it to skip
    found: dict[Key, tuple[float, float]] = {}
    for process in psutil.Process().children(recursive=True):
        if process.pid in skipped:
            continue
        try:
            with process.oneshot():
                times, created = process.cpu_times(), process.create_time()
        except psutil.Error:
            continue  # exited since the listing: its reaper's account has it
        found[process.pid, created] = (times.user + times.system, times.children_user + times.children_system)
    return found


def tree_cpu_between(
    own: tuple[float, float], before: dict[Key, tuple[float, float]], after: dict[Key, tuple[float, float]]
) -> float:
    """CPU seconds of the tree between two readings (see the module's docstring)."""
    total = own[1] - own[0]
    for key, (mine, reaped) in after.items():
        was_mine, was_reaped = before.get(key, (0.0, 0.0))
        total += (mine - was_mine) + (reaped - was_reaped)
    for key in before.keys() - after.keys():
        total -= sum(before[key])  # its whole life is in its reaper's account now
    return total


class Meter:
    """Started just before a run (construction), `stop`ped just after it. `exclude`: pids whose
    subtrees are not this run's; `inside` False when the run's work happens outside this tree."""

    def __init__(self, exclude: Collection[int] = (), inside: bool = True) -> None:
        self._exclude, self._inside = tuple(exclude), inside
        # Read from the slowest to the quickest, so the scanning of /proc stays outside the window.
        self._before = descendants(self._exclude) if inside else {}
        self._own = own_cpu()
        self._clock = machine.cpu_clock()
        self._began = time.perf_counter()

    def stop(self, wall_s: float) -> Sample:
        """The run's sample; `wall_s` is the run's own wall time (as its executor measured it)."""
        window = time.perf_counter() - self._began
        clock = machine.cpu_clock()
        own = own_cpu()
        after = descendants(self._exclude) if self._inside else {}
        cpu = tree_cpu_between((self._own, own), self._before, after) if self._inside else None
        steal = other = None
        if clock is not None and self._clock is not None:
            steal = clock.steal_s - self._clock.steal_s
            if cpu is not None:
                # Below 0 only by the counters' rounding (`resolution_s`): nobody else ran.
                other = max(0.0, clock.busy_s - self._clock.busy_s - cpu)
        fields = len(machine.BUSY_FIELDS) + FIELDS_PER_PROCESS * len(self._before.keys() | after.keys())
        load = machine.load_average()
        load_1m, resolution = load[0] if load else None, fields * machine.tick_s()
        return Sample(wall_s, cpu, steal, other, window, load_1m, resolution, machine.gil_enabled())
