"""Series `startup`: the time to start W processes under each start method, until every one of them
runs Python code (it sends its pid back over a pipe).

- fork: a copy of the parent — fast, whatever the parent has imported.
- spawn: a fresh interpreter that imports the parent's main module and the target's module — tens to
  hundreds of milliseconds each.
- forkserver: a fork of a small server process started on first use. One untimed start per method
  comes first, so the server's own start is not counted in every sample.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection, wait

from conquer.bench.context import Context
from conquer.bench.points import Point, Series, timed
from conquer.bench.ready import report_ready
from workers import START_METHODS
from workers.processes.supervise import ctrl_c_held, get_context, stop

#: Starting a process takes milliseconds; a child that has not reported by then never will.
READY_DEADLINE_S = 30.0


class StartError(RuntimeError):
    """A child did not report, or reported the wrong pid."""


def start_processes(start_method: str, count: int) -> float:
    """Seconds from starting `count` processes to all of them having reported their pid."""
    context = get_context(start_method)
    pipes = [context.Pipe(duplex=False) for _ in range(count)]
    processes = [
        context.Process(target=report_ready, args=(writer,), name=f"startup-probe-{number}", daemon=True)
        for number, (_, writer) in enumerate(pipes)
    ]
    pids: set[int] = set()
    try:
        began = time.perf_counter()
        with ctrl_c_held(start_method):  # as the executors start their workers
            for process in processes:
                process.start()
        for _, writer in pipes:
            writer.close()  # the parent's copy; the child holds its own
        waiting: list[Connection] = [reader for reader, _ in pipes]
        deadline = time.monotonic() + READY_DEADLINE_S
        while waiting:
            ready = wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise StartError(f"{len(waiting)} of {count} {start_method} processes never reported")
            for reader in ready:
                assert isinstance(reader, Connection)
                pids.add(reader.recv())
                waiting.remove(reader)
        elapsed = time.perf_counter() - began
    finally:
        for reader, _ in pipes:
            reader.close()
        stop(processes)
    if pids != {process.pid for process in processes}:
        raise StartError(f"the {start_method} children reported pids {sorted(pids)}, not their own")
    return elapsed


def measure(context: Context) -> Series:
    profile, cores, reporter = context.profile, context.cores, context.reporter
    methods = [method for method in START_METHODS if method in multiprocessing.get_all_start_methods()]
    counts = profile.worker_counts(cores)
    series = Series(
        "startup",
        "Process start-up",
        f"Seconds to start W = {counts[0]}..{counts[-1]} processes under each start method until every "
        "one runs Python code (each sends its pid back over a pipe; the pids are checked). The child's "
        "own module imports only the standard library; a spawned child also re-imports the parent's "
        "main module (here the `conquer` script, so click and conquer.cli), as every spawned worker does.",
        parameters={"start_methods": methods, "workers": list(counts)},
    )
    for method in START_METHODS:
        if method not in methods:
            series.skip(method, f"start method {method} is not available on this platform")
    reporter.begin(series, len(methods) * len(counts) * profile.repeats)
    points = {
        (method, count): Point(
            f"{method}",
            {"start_method": method, "workers": count},
            "start_s",
            "s",
        )
        for method in methods
        for count in counts
    }
    with timed(series):
        for method in methods:
            # Untimed: the fork server starts here, not in a sample. An error here is recorded by the
            # samples below, which meet it again.
            with contextlib.suppress(StartError, OSError):
                start_processes(method, 1)
        for _ in range(profile.repeats):
            for (method, count), point in points.items():
                reporter.tick()
                if point.error is None:
                    meter = context.deployments.meter()
                    try:
                        elapsed = start_processes(method, count)
                    except (StartError, OSError) as error:
                        point.error = f"{type(error).__name__}: {error}"
                        continue
                    point.samples.append(elapsed)
                    point.runs.append(meter.stop(elapsed))
    series.points = list(points.values())
    for point in series.points:
        median = point.median
        point.derived = {"per_process_s": median / point.params["workers"] if median else None}
    return series
