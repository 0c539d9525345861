"""Start methods: under fork a child sees the parent's data as it was at fork time; under spawn (and
forkserver) it starts from a fresh interpreter that re-imports the main module; and what starting N
processes costs with each.

fork copies the running parent — memory, module state, everything changed since import — so the child
sees the parent's run-time change below. spawn starts a new interpreter, which imports the main module
again under the name ``__mp_main__`` (the module-level line below prints again, from the child) and sees
only what importing sets up. forkserver forks each child from a small server process started once, so
children start from a clean state; each still imports the main module to find its target. The default
on Linux is fork up to Python 3.13 (forkserver from 3.14); macOS and Windows use spawn. Because spawn
re-imports the main module, everything that starts processes must sit under
``if __name__ == "__main__":`` — see ``conquer demo main-guard``.

Usage::

    conquer demo start-methods
    conquer demo start-methods --processes 8 --repeats 5
    python -m demos.start_methods --json
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from multiprocessing.queues import Queue
from typing import Any

from demos.common import JOIN_TIMEOUT_S, argument_parser, heading, run, running, say, start_and_join

#: Processes started only to be timed are named so; they stay quiet when they import this module.
TIMED = "timed"

if not multiprocessing.current_process().name.startswith(TIMED):
    say(f"this module runs its top level, imported as {__name__!r}")

#: What every import of this module sets; the parent changes it at run time, before starting children.
SETTINGS = {"source": "as set when the module was imported"}


def report_view(results: Queue[tuple[int, str, str]]) -> None:
    results.put((os.getpid(), __name__, SETTINGS["source"]))


def data_views(methods: list[str]) -> dict[str, dict[str, object]]:
    heading("what a child sees of the parent's data")
    SETTINGS["source"] = "as changed by the parent at run time"
    say(f"the parent (module {__name__!r}) set SETTINGS to say {SETTINGS['source']!r}")
    views: dict[str, dict[str, object]] = {}
    for method in methods:
        context: Any = multiprocessing.get_context(method)
        results: Queue[tuple[int, str, str]] = context.Queue()
        child = context.Process(target=report_view, args=(results,), name=f"{method}-child")
        with running([child]):
            pid, module, source = results.get(timeout=JOIN_TIMEOUT_S)
        say(f"{method:>10}: child pid {pid} has this module as {module!r}; SETTINGS says {source!r}")
        views[method] = {"pid": pid, "module": module, "settings": source}
    return views


def nothing() -> None:
    pass


def start_costs(methods: list[str], processes: int, repeats: int) -> dict[str, float]:
    """Median seconds to start `processes` processes that do nothing and see them exit, per method."""
    heading(f"time to start {processes} processes and see them exit (median of {repeats})")
    medians = {}
    for method in methods:
        context: Any = multiprocessing.get_context(method)
        start_and_join([context.Process(target=nothing, name=f"{TIMED}-warm-up")])  # e.g. the forkserver
        walls = []
        for _ in range(repeats):
            began = time.perf_counter()
            start_and_join([context.Process(target=nothing, name=f"{TIMED}-{n}") for n in range(processes)])
            walls.append(time.perf_counter() - began)
        medians[method] = statistics.median(walls)
        say(f"{method:>10}: {medians[method]:.3f} s, {medians[method] / processes * 1000:.1f} ms per process")
    return medians


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--processes", type=int, default=8, help="processes started per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method (the median is shown)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    arguments = parser.parse_args()
    methods = multiprocessing.get_all_start_methods()
    say(f"start methods here: {', '.join(methods)}; the default is {methods[0]}")
    views = data_views(methods)
    costs = start_costs(methods, arguments.processes, arguments.repeats)
    if arguments.json:
        print(
            json.dumps(
                {"default": methods[0], "views": views, "start_s": costs, "processes": arguments.processes}
            )
        )
    return 0


if __name__ == "__main__":
    run(main)
