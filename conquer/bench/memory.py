"""Series `memory`: peak memory of `conquer run sum N --on processes --start-method fork` — the command
and every worker it forks — at two N, to show that it does not grow with N (a chunk is a range, never a
list of numbers).

Nothing is sampled. Each run is the command in a fresh interpreter under `conquer.peak_rss`, which reads
the kernel's marks once the command has finished and waited for its workers: the command's own peak RSS,
the largest peak RSS of its workers, and how many processes it forked. The point's figure is the bound
they give on the whole tree: command + forked × largest worker, which no moment of the run exceeded (it
counts pages a worker shares with the command once per process, and peaks that need not coincide). A run
that leaves a child unreaped has a worker whose peak is in no figure: it is an error, not a point.
The start method is fork because the bound counts os.fork() calls: under spawn or forkserver a
resource tracker or fork server is a child the command never waits for.

The command's own JSON says whether its answer was verified.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from conquer import peak_rss
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, timed

#: sum 10^9 on 2 cores takes about a minute; a run still going after this is stuck.
RUN_DEADLINE_S = 1800.0
#: Within this factor the two sizes count as "flat". Measured on 2 cores at load average 10-15: the
#: bound's median moved by 0.2% between 10^7 and 10^9 (5 runs each, all within 51.9-53.0 MB).
FLAT_WITHIN = 1.10


class MemoryProbeError(RuntimeError):
    pass


def peak_of_run(argv: list[str]) -> dict[str, Any]:
    """Run `python -m MODULE ARGS` (`argv`) under `conquer.peak_rss`: its marks, wall time and JSON."""
    with tempfile.TemporaryDirectory(prefix="conquer-memory-") as scratch:
        report = Path(scratch) / "peaks.json"
        command = [sys.executable, "-m", peak_rss.__name__, str(report), *argv]
        began = time.perf_counter()
        root = psutil.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        try:
            stdout, stderr = root.communicate(timeout=RUN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            for process in [*root.children(recursive=True), root]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            root.communicate()
            raise MemoryProbeError(f"{' '.join(argv)} did not finish in {RUN_DEADLINE_S:g} s") from None
        wall = time.perf_counter() - began
        if root.returncode != 0:
            raise MemoryProbeError(f"exit {root.returncode}: {stderr.strip()[:200]}")
        peaks = peak_rss.load(report)
    if peaks.unreaped:
        raise MemoryProbeError(f"{peaks.unreaped} child process(es) never waited for: peaks unknown")
    return {"peaks": peaks, "wall_s": wall, "report": json.loads(stdout)}


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    sizes = profile.memory_n
    series = Series(
        "memory",
        "Peak memory",
        f"Peak memory of `conquer run sum N --on processes --start-method fork --workers {cores}` (the "
        f"command and all its workers) at N = {sizes[0]:_} and {sizes[1]:_}, from the kernel's "
        "high-water marks of RSS (VmHWM, ru_maxrss), never sampled: the command's own peak, the "
        "largest of its workers' and the processes it forked. The tree's peak is at most command + "
        "forked × largest worker (pages shared after fork count once per process).",
        parameters={"kind": "sum", "n": list(sizes), "executor": "processes", "workers": cores},
    )
    reporter.begin(series, len(sizes) * profile.repeats)
    points = [
        Point(
            "processes",
            {"kind": "sum", "n": n, "executor": "processes", "start_method": "fork", "workers": cores},
            "peak_rss_bytes",
            "bytes",
        )
        for n in sizes
    ]
    extras: dict[int, dict[str, list[float]]] = {
        n: {"command": [], "worker": [], "forked": [], "wall": []} for n in sizes
    }
    with timed(series):
        for _ in range(profile.repeats):
            for n, point in zip(sizes, points, strict=True):
                reporter.tick()
                if point.error is not None:
                    continue
                argv = ["conquer", "run", "sum", str(n), "--on", "processes", "--start-method", "fork"]
                argv += ["--workers", str(cores), "--json"]
                try:
                    run = peak_of_run(argv)
                except (MemoryProbeError, OSError, ValueError, TypeError) as error:
                    point.error = f"{type(error).__name__}: {error}"
                    continue
                if not run["report"].get("verified"):
                    point.verified = False
                    point.error = f"wrong answer: {run['report'].get('value')} != n(n+1)/2"
                    continue
                peaks: peak_rss.Peaks = run["peaks"]
                point.samples.append(peaks.tree_bound_bytes)
                extras[n]["command"].append(peaks.own_bytes)
                extras[n]["worker"].append(peaks.largest_child_bytes)
                extras[n]["forked"].append(peaks.forks)
                extras[n]["wall"].append(run["wall_s"])
    for n, point in zip(sizes, points, strict=True):
        point.derived = {
            key: statistics.median(values) if values else None
            for key, values in (
                ("command_peak_rss_bytes", extras[n]["command"]),
                ("largest_worker_peak_rss_bytes", extras[n]["worker"]),
                ("processes_forked", extras[n]["forked"]),
                ("wall_s", extras[n]["wall"]),
            )
        }
    series.points = points
    small, large = (point.median for point in points)
    growth = large / small if small and large else None
    series.derived = {"growth": growth, "flat": growth is not None and growth <= FLAT_WITHIN}
    return series
