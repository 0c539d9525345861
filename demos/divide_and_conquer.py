"""Exercise 2, divide and conquer: the note's version — a list of 1..N cut into 8 slices, one process
each, partial sums back through a Queue — next to the project's — 8 processes sent ranges — with the
time and peak memory of both.

The note's version builds ``list(range(1, N + 1))`` first. At its N = 10^8 that list is about 4 GB
(10^8 int objects in 32-byte blocks, plus 8-byte pointers), the 8 slices add 0.8 GB of pointers, and
each forked worker that walks its slice changes every int's reference count, so the kernel copies those
pages for it: measured on the README's machine, a peak of 4.8 GB in the parent alone.
So the note's version runs at ``--faithful-n`` = 10^7 by default (pass 1e8 where the memory is to
spare); the ranges version runs at both sizes, since each of its messages is four numbers and its memory
does not grow with N. Kept from the note: 8 processes, one slice each, a Queue, and its timer,
which starts once the processes are running — so it counts neither building the list nor starting
the processes; the wall time here counts both. Changed:
the results are read with a deadline, exactly 8 of them (the note's ``while not queue.empty()`` can
stop early, since a result may still be on its way). Each run is a fresh interpreter; its memory is
what the kernel recorded, never sampled (`conquer.peak_rss`): the parent's peak RSS and the largest
peak of its 8 workers, read by the parent once it has waited for all of them. A forked worker's RSS
counts the pages it still shares with the parent, so the two figures overlap and are not added up; the
list shows in the parent's.

Usage::

    conquer demo divide-and-conquer
    conquer demo divide-and-conquer --faithful-n 1e6 --n 1e7 --repeats 1
    python -m demos.divide_and_conquer --only faithful --n 1e7
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from multiprocessing.queues import Queue
from typing import Any

import workers
from conquer import peak_rss
from conquer.numbers import parse_count
from demos.common import JOIN_TIMEOUT_S, argument_parser, heading, run, running, say
from tasks import Job, check

PROCESSES = 8
MB = 1_000_000


def add_slice(numbers: list[int], results: Queue[int]) -> None:
    """The note's task: add up one slice of the list, one number at a time, and put the sum on the queue."""
    total = 0
    for number in numbers:
        total += number
    results.put(total)


def faithful(n: int) -> dict[str, Any]:
    began = time.perf_counter()
    numbers = list(range(1, n + 1))
    built = time.perf_counter()
    results: Queue[int] = multiprocessing.Queue()
    size = -(-n // PROCESSES)  # ceiling: the last slice takes the remainder
    processes = [
        multiprocessing.Process(target=add_slice, args=(numbers[start : start + size], results))
        for start in range(0, n, size)
    ]
    with running(processes):
        note_timer = time.perf_counter()  # where the note starts its clock: after starting the processes
        answer = sum(results.get(timeout=JOIN_TIMEOUT_S) for _ in processes)
    ended = time.perf_counter()
    return {
        "answer": answer,
        "wall_s": ended - began,
        "build_s": built - began,
        "note_timer_s": ended - note_timer,
    }


def with_ranges(n: int) -> dict[str, Any]:
    job = Job("sum", n, PROCESSES)
    began = time.perf_counter()
    report = workers.run(job, workers.plan("sum", "processes", PROCESSES, "queue"))
    return {
        "answer": report.value,
        "wall_s": time.perf_counter() - began,
        "build_s": 0.0,
        "note_timer_s": None,
    }


VERSIONS = {"faithful": faithful, "ranges": with_ranges}


def run_one(version: str, n: int) -> dict[str, Any]:
    """Run one version here, then add the kernel's peaks: this process's and its largest worker's."""
    outcome = VERSIONS[version](n)
    peaks = peak_rss.read()
    if peaks.unreaped:  # a worker not waited for has a peak in no figure
        raise SystemExit(f"{version}: {peaks.unreaped} worker(s) still unreaped; their peaks are unknown")
    outcome.update(
        version=version,
        n=n,
        expected=check(Job("sum", n, 1)),
        parent_peak_bytes=peaks.own_bytes,
        worker_peak_bytes=peaks.largest_child_bytes,
    )
    return outcome


def measure(version: str, n: int) -> dict[str, Any]:
    """Run a version in a fresh interpreter, so that each run's peaks are its own."""
    command = [sys.executable, "-m", __spec__.name, "--only", version, "--n", str(n), "--json"]
    child = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=600, check=False)
    if child.returncode != 0:
        raise SystemExit(f"{version} at n={n:_} failed with status {child.returncode}")
    outcome: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return outcome


def compare(faithful_n: int, n: int, repeats: int) -> list[dict[str, Any]]:
    cases = [("faithful", faithful_n), ("ranges", faithful_n)] + ([("ranges", n)] if n != faithful_n else [])
    heading(f"{PROCESSES} processes add up 1..N; median of {repeats} run(s), each a fresh interpreter")
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(repeats):  # in rounds, so a busy spell of the machine spreads over every case
        for version, size in cases:
            runs[(version, size)].append(measure(version, size))
    rows = []
    header = f"    {'version':<10}{'N':>14}{'wall s':>9}{'note s':>9}{'list s':>9}"
    print(header + f"{'parent peak':>13}{'worker peak':>13}  answer")
    for (version, size), outcomes in runs.items():
        row = {
            key: statistics.median(o[key] for o in outcomes) for key in outcomes[0] if _numeric(outcomes, key)
        }
        row.update(version=version, n=size, verified=all(o["answer"] == o["expected"] for o in outcomes))
        rows.append(row)
        print(format_row(row))
    say(
        "peak: the largest RSS the kernel recorded for the parent, and for its largest worker; a forked "
        "worker's counts the pages it shares with the parent, so the two do not add up"
    )
    return rows


def format_row(row: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        return f"{row[key]:>9.2f}" if row.get(key) else f"{'—':>9}"

    memory = "".join(f"{row[key] / MB:>10,.0f} MB" for key in ("parent_peak_bytes", "worker_peak_bytes"))
    verdict = "✓ verified" if row["verified"] else "✗ MISMATCH"
    times = "".join(seconds(key) for key in ("wall_s", "note_timer_s", "build_s"))
    return f"    {row['version']:<10}{row['n']:>14_}{times}{memory}  {verdict}"


def _numeric(outcomes: list[dict[str, Any]], key: str) -> bool:
    return all(isinstance(o[key], int | float) and not isinstance(o[key], bool) for o in outcomes)


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--faithful-n", type=parse_count, default=10**7, help="N for the note's version")
    parser.add_argument("--n", type=parse_count, default=10**8, help="N for the ranges version (and --only)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument(
        "--only", choices=tuple(VERSIONS), help="run one version here, unmeasured from outside"
    )
    parser.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    arguments = parser.parse_args()
    if arguments.only:
        outcome = run_one(arguments.only, arguments.n)
        if arguments.json:
            print(json.dumps(outcome))
        else:
            say(f"{arguments.only}: 1..{arguments.n:_} = {outcome['answer']} in {outcome['wall_s']:.2f} s")
        return 0 if outcome["answer"] == outcome["expected"] else 1
    rows = compare(arguments.faithful_n, arguments.n, arguments.repeats)
    if arguments.json:
        print(json.dumps(rows))
    return 0 if all(row["verified"] for row in rows) else 1


if __name__ == "__main__":
    run(main)
