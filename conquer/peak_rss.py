"""Peak memory as the kernel records it: each process's own high-water mark of RSS, never sampled.

For every process the kernel keeps the high-water mark of its resident set, however briefly the peak
lasted, so nothing can be missed between two looks. A process can read two such marks: its own (VmHWM,
of its memory map since it started its program) and the largest among the descendants it has waited
for (``ru_maxrss`` of ``RUSAGE_CHILDREN``: a reaped child brings its own mark and those of its reaped
descendants). The kernel keeps no mark for a process *tree*: its processes peak at different moments,
and a forked child's RSS counts the pages it still shares with its parent, so peaks do not add up to
what the tree held. What the marks do give is a bound: a command and the k processes it forked never
held more, at any moment, than ``own peak + k × the largest child's peak`` (`Peaks.tree_bound_bytes`).

Why not ``ru_maxrss`` of ``RUSAGE_SELF`` for the own mark: at exec the kernel folds the mark of the
image being replaced into it, and subprocess starts programs with vfork, whose image is the launcher's,
so a program started by a 200 MB process reports 200 MB. VmHWM belongs to the new image alone. (A child
that exec'd brings the same excess into ``RUSAGE_CHILDREN``: an overestimate, so the bound still holds;
forked workers that do not exec, as under the fork start method, carry no excess.)

Run as a module, it runs another module *in this process* — so this process is the command and its
children are the command's — and, once that module has finished, writes the marks as JSON to a file.
The module's exit status is passed on; its standard streams are untouched.

Usage::

    python -m conquer.peak_rss peaks.json conquer run sum 1e7 --on processes --start-method fork
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import runpy
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

#: ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS.
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


class _ForkCounter:
    """os.fork() calls this process has made since this module was imported. multiprocessing's fork
    start method forks this way; subprocess, spawn and forkserver children are not counted."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Also run in every forked child: its forks are its own, and the lock it inherited may have
        been held by another thread of the parent at the moment of the fork."""
        self._lock = threading.Lock()  # guards `count`: threads may fork at the same time
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1

    def read(self) -> int:
        with self._lock:
            return self.count


_forks = _ForkCounter()
os.register_at_fork(after_in_parent=_forks.add, after_in_child=_forks.restart)


@dataclass(frozen=True, slots=True)
class Peaks:
    """The kernel's marks, read by the process they describe."""

    #: This process's own peak RSS since it started its program.
    own_bytes: int
    #: The largest peak RSS among the descendants waited for; 0 if none.
    largest_child_bytes: int
    #: os.fork() calls counted in this process.
    forks: int
    #: Children not yet waited for (running or zombie) when read: their peaks are in no figure here.
    unreaped: int

    @property
    def tree_bound_bytes(self) -> int:
        """What this process and the ones it forked can have held at most, at any one moment."""
        return self.own_bytes + self.forks * self.largest_child_bytes


def own_peak_bytes() -> int:
    """This process's mark since it started its program: VmHWM on Linux; elsewhere ru_maxrss, which may
    include the launcher's (see above)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MAXRSS_UNIT


def read() -> Peaks:
    """This process's marks, now. Read at the end of a run, after its children have been waited for."""
    own = own_peak_bytes()
    largest_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * MAXRSS_UNIT
    import psutil  # only now: its import must not count in the marks above

    return Peaks(own, largest_child, _forks.read(), unreaped=len(psutil.Process().children()))


def load(path: Path) -> Peaks:
    return Peaks(**json.loads(path.read_text()))


def main(arguments: list[str]) -> int | str | None:
    if len(arguments) < 2:
        return "usage: python -m conquer.peak_rss REPORT.json MODULE [ARGUMENT ...]"
    report, module, *rest = arguments
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        return exit_.code
    finally:
        Path(report).write_text(json.dumps(asdict(read())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
