"""CPU-bound vs I/O-bound: the same two workloads on threads, processes and asyncio, measured — with the
GIL, threads speed up waiting but not computing; processes speed up both, asyncio only waiting. On a
free-threaded build with the GIL off, threads speed up both (the demo says which build it ran on).

In CPython one lock, the GIL, lets only one thread run Python bytecode at a time. A thread that waits —
on a socket, a disk, ``time.sleep`` — lets the GIL go, so threads overlap waits: I/O-bound work speeds up
with the number of threads. A thread that computes holds it (handing it over every few milliseconds),
so CPU-bound threads take turns: no faster than one thread. Processes each have their own interpreter
and GIL, so they compute in parallel, up to the number of cores, at the price of starting them. asyncio
runs coroutines on one thread: waits overlap, computing does not — and a long computation would stop
every other coroutine (the asyncio executor refuses CPU-bound jobs). A free-threaded build (3.13t,
``sys._is_gil_enabled()`` False) has no GIL: there threads compute in parallel too, as the last table
shows. Figures are medians of repeats on this machine, which may be busy: compare within one run.

Usage::

    conquer demo cpu-vs-io
    conquer demo cpu-vs-io --n 5e6 --items 16 --latency 0.02 --repeats 1
    python -m demos.cpu_vs_io --json
"""

from __future__ import annotations

import json
import sys
import sysconfig
from dataclasses import asdict, dataclass

import workers
from conquer import machine
from conquer.compare import compare
from demos.common import argument_parser, heading, run, say
from tasks import Job

EXECUTORS = ("serial", "threads", "processes", "asyncio")


@dataclass(frozen=True)
class Gil:
    """Whether this interpreter was built free-threaded, and whether the GIL is on right now."""

    free_threaded_build: bool
    enabled: bool

    @classmethod
    def here(cls) -> Gil:
        return cls(bool(sysconfig.get_config_var("Py_GIL_DISABLED")), machine.gil_enabled())

    def describe(self) -> str:
        if not self.free_threaded_build:
            return f"Python {sys.version.split()[0]} with the GIL: threads take turns running Python code"
        if self.enabled:
            return "a free-threaded build, but with the GIL switched back on (PYTHON_GIL=1 or an extension)"
        return "a free-threaded build with the GIL OFF: threads run Python code in parallel"


def medians(job: Job, counts: dict[str, int], repeats: int) -> dict[str, float | str]:
    """Median wall seconds of `job` per executor (with `counts[executor]` workers), or why it was refused.
    Runs go in rounds — every executor once, then again — so a busy spell of the machine spreads over all."""
    plans, refused = [], {}
    for name, count in counts.items():
        try:
            plans.append(workers.plan(job.kind, name, count))
        except workers.PlanError as error:
            refused[name] = str(error)
    figures: dict[str, float | str] = dict(refused)
    for row in compare(job, plans, repeats):
        if row.error or not row.verified or row.median is None:
            raise SystemExit(f"{row.plan.executor} failed: {row.error or 'wrong answer'}")
        figures[row.plan.executor] = row.median
    return {name: figures[name] for name in counts}


def table(jobs: dict[str, tuple[Job, int]], repeats: int) -> dict[str, dict[str, float | str]]:
    heading(f"median wall time of {repeats} run(s), and speedup over serial")
    width = max(len(f"{label} ({count} workers)") for label, (_, count) in jobs.items()) + 2
    print(f"    {'workload':<{width}}" + "".join(f"{name:>18}" for name in EXECUTORS))
    rows: dict[str, dict[str, float | str]] = {}
    for label, (job, count) in jobs.items():
        rows[label] = medians(job, {name: 1 if name == "serial" else count for name in EXECUTORS}, repeats)
        serial = rows[label]["serial"]
        assert isinstance(serial, float)
        cells = [
            f"{'refused':>18}" if isinstance(value, str) else f"{value:>9.3f} s {serial / value:>5.1f}×"
            for value in rows[label].values()
        ]
        print(f"    {f'{label} ({count} workers)':<{width}}" + "".join(cells))
    for row in rows.values():
        for name, value in row.items():
            if isinstance(value, str):
                say(f"{name} refused: {value}")
    return rows


def thread_scaling(job: Job, cores: int, repeats: int) -> dict[int, float]:
    heading(f"CPU-bound {job.describe()} on 1..{cores} threads (median of {repeats})")
    walls: dict[int, float] = {}
    for row in compare(
        job, [workers.plan(job.kind, "threads", count) for count in range(1, cores + 1)], repeats
    ):
        if row.median is None:
            raise SystemExit(f"threads failed: {row.error}")
        walls[row.plan.workers] = row.median
        speed = walls[1] / row.median
        say(f"{row.plan.workers} thread(s): {row.median:.3f} s, {speed:.2f}× one thread's speed")
    return walls


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--n", type=float, default=2e7, help="CPU-bound: add up 1..N by a Python loop")
    parser.add_argument("--items", type=int, default=32, help="I/O-bound: items to download")
    parser.add_argument("--latency", type=float, default=0.05, help="I/O-bound: seconds each item waits")
    parser.add_argument("--io-workers", type=int, default=16, help="workers for the I/O-bound workload")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is shown")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    arguments = parser.parse_args()
    cores, gil = machine.cores(), Gil.here()
    say(f"{machine.describe()}")
    say(f"this interpreter: {gil.describe()}")
    cpu = Job("sum", int(arguments.n), 4 * cores)
    io = Job("download", arguments.items, arguments.items, latency=arguments.latency)
    jobs = {
        f"CPU-bound: {cpu.describe()}": (cpu, cores),
        f"I/O-bound: {io.n} downloads × {io.latency:g} s": (io, arguments.io_workers),
    }
    rows = table(jobs, arguments.repeats)
    scaling = thread_scaling(cpu, cores, arguments.repeats)
    threads_on_cpu = scaling[1] / scaling[cores]
    expected = "about 1× — the GIL lets one compute at a time" if gil.enabled else f"up to {cores}× — no GIL"
    say(f"CPU-bound on {cores} threads: {threads_on_cpu:.2f}× one thread's speed (expect {expected})")
    if arguments.json:
        print(
            json.dumps(
                {"machine": machine.facts(), "gil": asdict(gil), "rows": rows, "thread_scaling": scaling}
            )
        )
    return 0


if __name__ == "__main__":
    run(main)
