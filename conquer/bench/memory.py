"""Series `memory`: peak memory of `conquer run sum N --on processes` — the command and every worker it
starts — at two N, to show that it does not grow with N (a chunk is a range, never a list of numbers).

The command runs as a child of the bench; its process tree is sampled every 10 ms with psutil. Two
figures per run:

- peak RSS of the tree: the sum, over every process seen, of that process's own peak RSS (the kernel's
  high-water mark, VmHWM on Linux, which no sampling gap can miss once the process has been seen). It
  is an upper bound — the processes' peaks need not coincide — and it counts pages that forked workers
  share with their parent once per process;
- peak PSS of the tree: the largest sum of PSS over one sample (each shared page split among its
  sharers: the tree's real footprint).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from conquer.bench.context import Context
from conquer.bench.points import Point, Series, timed

SAMPLE_INTERVAL_S = 0.01
#: sum 10^9 on 2 cores takes about a minute; a run still going after this is stuck.
RUN_DEADLINE_S = 1800.0
#: Within this factor the two sizes count as "flat" (the allocator and the interpreter wobble a little).
FLAT_WITHIN = 1.10


class MemoryProbeError(RuntimeError):
    pass


def high_water_mark(pid: int) -> int | None:
    """The kernel's record of a process's peak RSS (VmHWM, Linux), in bytes; None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class TreePeaks:
    """What the samples of one process tree have seen: each process's peak RSS, and the peak PSS sum."""

    per_process: dict[int, int] = field(default_factory=dict)
    pss: int | None = None

    def sample(self, root: psutil.Process) -> None:
        pss_total: int | None = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                info = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # it exited between the listing and the reading
            peak = max(high_water_mark(process.pid) or 0, info.rss)
            self.per_process[process.pid] = max(self.per_process.get(process.pid, 0), peak)
            pss = getattr(info, "pss", None)
            pss_total = pss_total + pss if pss_total is not None and pss is not None else None
        if pss_total is not None:
            self.pss = max(self.pss or 0, pss_total)


def peak_of_run(argv: list[str]) -> dict[str, Any]:
    """Run `argv`, sampling its process tree until it exits; its peaks, wall time and JSON output."""
    peaks = TreePeaks()
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        began = time.perf_counter()
        root = psutil.Popen(argv, stdout=output, stderr=errors, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + RUN_DEADLINE_S
        try:
            while root.poll() is None:
                if time.monotonic() > deadline:
                    raise MemoryProbeError(f"{' '.join(argv[2:])} did not finish in {RUN_DEADLINE_S:g} s")
                with contextlib.suppress(psutil.NoSuchProcess):  # exited mid-sample: poll() says so next
                    peaks.sample(root)
                time.sleep(SAMPLE_INTERVAL_S)  # the sampling period, not a wait for an event
        finally:
            if root.poll() is None:
                for process in [root, *root.children(recursive=True)]:
                    process.kill()
                root.wait()
        wall = time.perf_counter() - began
        output.seek(0)
        errors.seek(0)
        stdout, stderr = output.read().decode(), errors.read().decode()
    if root.returncode != 0:
        raise MemoryProbeError(f"exit {root.returncode}: {stderr.strip()[:200]}")
    return {
        "peak_rss": sum(peaks.per_process.values()),
        "peak_single_rss": max(peaks.per_process.values(), default=0),
        "processes_seen": len(peaks.per_process),
        "peak_pss": peaks.pss,
        "wall_s": wall,
        "report": json.loads(stdout),
    }


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    sizes = profile.memory_n
    series = Series(
        "memory",
        "Peak memory",
        f"Peak memory of `conquer run sum N --on processes --workers {cores}` (the command and all its "
        f"workers) at N = {sizes[0]:_} and {sizes[1]:_}, sampled every {SAMPLE_INTERVAL_S * 1000:g} ms: "
        "peak RSS = the sum of each process's own peak RSS (an upper bound; pages shared after fork "
        "count once per process), peak PSS = the largest sum of PSS in one sample (shared pages split "
        "among their sharers).",
        parameters={"kind": "sum", "n": list(sizes), "executor": "processes", "workers": cores},
    )
    reporter.begin(series, len(sizes) * profile.repeats)
    points = [
        Point(
            "processes",
            {"kind": "sum", "n": n, "executor": "processes", "workers": cores},
            "peak_rss_bytes",
            "bytes",
        )
        for n in sizes
    ]
    extras: dict[int, dict[str, list[float]]] = {
        n: {"pss": [], "single": [], "seen": [], "wall": []} for n in sizes
    }
    with timed(series):
        for _ in range(profile.repeats):
            for n, point in zip(sizes, points, strict=True):
                reporter.tick()
                if point.error is not None:
                    continue
                argv = [sys.executable, "-m", "conquer", "run", "sum", str(n), "--on", "processes"]
                argv += ["--workers", str(cores), "--json"]
                try:
                    run = peak_of_run(argv)
                except (MemoryProbeError, OSError, ValueError) as error:
                    point.error = f"{type(error).__name__}: {error}"
                    continue
                if not run["report"].get("verified"):
                    point.verified = False
                    point.error = f"wrong answer: {run['report'].get('value')} != n(n+1)/2"
                    continue
                point.samples.append(run["peak_rss"])
                if run["peak_pss"] is not None:
                    extras[n]["pss"].append(run["peak_pss"])
                extras[n]["single"].append(run["peak_single_rss"])
                extras[n]["seen"].append(run["processes_seen"])
                extras[n]["wall"].append(run["wall_s"])
    for n, point in zip(sizes, points, strict=True):
        point.derived = {
            key: statistics.median(values) if values else None
            for key, values in (
                ("peak_pss_bytes", extras[n]["pss"]),
                ("peak_largest_process_rss_bytes", extras[n]["single"]),
                ("processes_seen", extras[n]["seen"]),
                ("wall_s", extras[n]["wall"]),
            )
        }
    series.points = points
    small, large = (point.median for point in points)
    growth = large / small if small and large else None
    series.derived = {"growth": growth, "flat": growth is not None and growth <= FLAT_WITHIN}
    return series
