"""Where a broker's time goes: Celery on Redis against in-host processes, on this machine, in one run.

Three measurements, each repeated in rounds (every variant once per round, so a slow spell of a shared
machine spreads over all of them), reported as medians with the machine's facts and load:

1. CPU-bound: `sum 10^8` in 16 chunks on 2 worker processes — the `processes` executor against the
   `celery` executor: prefork (1 worker × 2 pool processes) without and with task events, and 2 solo
   workers. The ratio is taken per round. Each run's idle time per worker process (wall minus the
   time spent in chunks) is the broker's latency, which a busy machine does not hide; CPU seconds per
   process role (the client, each worker's main process, its pool processes, Redis) show the broker's
   work, independently of what else the machine runs.
2. Trivial chunks: `sum 2000` in 2000 chunks — chunks per second from sending the chord to the answer,
   and CPU milliseconds per chunk by role.
3. The Redis floor: `redis-benchmark` against the same embedded Redis (its Unix socket).

Next to conquer's deployments runs the starting point: Celery as usually written (`DEFAULTS`).

Usage::

    python benchmarks/celery_overhead.py                 # about 2 minutes on 2 cores
    python benchmarks/celery_overhead.py --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

import workers
from conquer import machine
from tasks import Job, check, split
from workers.base import Report
from workers.celery.chord import Deployment, run
from workers.celery.client import Client
from workers.celery.localstack import LocalStack, local_stack, node_layout
from workers.celery.settings import Settings

CPU_JOB = Job("sum", 10**8, 16)
TRIVIAL_JOB = Job("sum", 2000, 2000)
WORKERS = 2

#: name -> (pool, task events). Each is deployed as the celery executor deploys 2 worker processes
#: (`node_layout`): prefork as 1 worker × 2 pool processes, solo as 2 workers.
VARIANTS = {
    "celery prefork": ("prefork", False),  # what `conquer run/compare --on celery` starts
    "celery prefork+events": ("prefork", True),  # as `conquer up` and compose run it, for Flower
    "celery solo": ("solo", False),
}

#: The starting point: one prefork worker -c 2 as Celery's tutorial runs it (prefetch multiplier 4,
#: gossip and mingle on, task events on) and the chord sent and awaited the usual way (every chunk's
#: result stored, `chord(...).apply_async().get()`), without conquer's progress keys.
DEFAULTS = "celery as usually written"
DEFAULT_WORKER_ARGS = ("--prefetch-multiplier", "4")


@dataclass
class Roles:
    """CPU seconds used by each role of a stack while something ran."""

    client: float
    main: float
    children: float
    redis: float

    @property
    def total(self) -> float:
        return self.client + self.main + self.children + self.redis


def cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def snapshot(stack: LocalStack) -> Roles:
    mains = [psutil.Process(p.pid) for p in stack.workers]
    children = [child for main in mains for child in main.children(recursive=True)]
    return Roles(
        client=cpu(psutil.Process()),
        main=sum(map(cpu, mains)),
        children=sum(map(cpu, children)),
        redis=cpu(psutil.Process(stack.broker.pid)) if stack.broker else 0.0,
    )


def delta(after: Roles, before: Roles) -> Roles:
    return Roles(
        after.client - before.client,
        after.main - before.main,
        after.children - before.children,
        after.redis - before.redis,
    )


@contextmanager
def stacks() -> Iterator[dict[str, Deployment]]:
    with ExitStack() as started:
        deployments = {}
        for name, (pool, events) in VARIANTS.items():
            settings, nodes = node_layout(Settings(worker_pool=pool, task_events=events), WORKERS)
            stack = started.enter_context(local_stack(settings, workers=nodes))
            deployments[name] = Deployment(Client(stack.app, stack.settings), stack, stack.startup_s)
        stack = started.enter_context(
            local_stack(Settings(worker_concurrency=WORKERS), workers=1, worker_args=DEFAULT_WORKER_ARGS)
        )
        deployments[DEFAULTS] = Deployment(Client(stack.app, stack.settings), stack, stack.startup_s)
        yield deployments


def usual_chord(job: Job, app: Any) -> float:
    """The job sent as a chord the way most Celery code does it; its wall time."""
    from celery import chord

    from workers.celery.app import CHUNK_TASK, COMBINE_TASK

    began = time.perf_counter()
    header = [app.signature(CHUNK_TASK, (chunk.to_message(),), immutable=True) for chunk in split(job)]
    result = chord(header, app.signature(COMBINE_TASK, (job.kind,))).apply_async()
    value = result.get(timeout=600)
    wall = time.perf_counter() - began
    assert value == check(job)
    for chunk_result in result.parent.results:
        chunk_result.forget()
    result.forget()
    return wall


def idle(report: Report) -> float:
    """Seconds the average worker process spent without a chunk during the run: waiting for the
    first message, between chunks, and after its last one. This is where a broker's latency shows,
    however busy the machine is (a slow spell stretches the chunks, not the gaps)."""
    busy: dict[int, float] = {}
    for chunk in report.chunks:
        busy[chunk.pid] = busy.get(chunk.pid, 0.0) + chunk.seconds
    return report.wall_s - sum(busy.values()) / WORKERS


def timed(job: Job, name: str, deployment: Deployment | None) -> tuple[float, float | None, Roles | None]:
    """One run: its wall time, the idle time per worker process (None when unknown), the CPU by role."""
    if deployment is None:
        report = workers.run(job, workers.plan(job.kind, "processes", WORKERS))
        return report.wall_s, idle(report), None
    assert deployment.stack is not None
    before = snapshot(deployment.stack)
    if name == DEFAULTS:
        wall, gaps = usual_chord(job, deployment.client.app), None
    else:
        report = run(job, workers=WORKERS, deployment=deployment)
        assert report.verified, name
        wall, gaps = report.wall_s, idle(report)
    return wall, gaps, delta(snapshot(deployment.stack), before)


def rounds(job: Job, deployments: dict[str, Deployment], count: int) -> dict[str, Any]:
    names = ["processes", *deployments]
    walls: dict[str, list[float]] = {name: [] for name in names}
    idles: dict[str, list[float]] = {name: [] for name in names}
    roles: dict[str, list[Roles]] = {name: [] for name in deployments}
    for _ in range(count):
        for name in names:
            wall, gaps, used = timed(job, name, deployments.get(name))
            walls[name].append(wall)
            if gaps is not None:
                idles[name].append(gaps)
            if used:
                roles[name].append(used)
    result: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {"wall_s_median": statistics.median(walls[name]), "wall_s": walls[name]}
        if idles[name]:
            entry["idle_s_median"] = statistics.median(idles[name])
        if name in deployments:
            ratios = [c / p for c, p in zip(walls[name], walls["processes"], strict=True)]
            entry["ratio_to_processes_median"] = statistics.median(ratios)
            entry["ratios"] = ratios
            entry["cpu_s_median"] = {
                role: statistics.median(getattr(r, role) for r in roles[name])
                for role in ("client", "main", "children", "redis", "total")
            }
        result[name] = entry
    return result


def redis_floor(stack: LocalStack) -> dict[str, float]:
    """redis-benchmark on the stack's socket: one client (latency-bound, like one Celery process) and
    50 clients, plain and pipelined."""
    binary = shutil.which("redis-benchmark")
    if binary is None or stack.broker is None:
        return {}
    sock = stack.settings.broker_url.removeprefix("redis+socket://")
    floor = {}
    for label, extra in (
        ("1 client", ["-c", "1"]),
        ("50 clients", ["-c", "50"]),
        ("50 clients, -P 16", ["-c", "50", "-P", "16"]),
    ):
        output = subprocess.run(
            [binary, "-s", sock, "-n", "100000", "-t", "ping,lpush,rpop", "--csv", *extra],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for line in output.splitlines()[1:]:
            fields = [field.strip('"') for field in line.split(",")]
            floor[f"{fields[0]} ({label})"] = float(fields[1])
    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", dest="json_path", default=None)
    options = parser.parse_args()
    load_before = os.getloadavg()
    with stacks() as deployments:
        startup = {name: d.setup_s for name, d in deployments.items()}
        cpu_bound = rounds(CPU_JOB, deployments, options.rounds)
        trivial = rounds(TRIVIAL_JOB, deployments, options.rounds)
        floor = redis_floor(next(iter(deployments.values())).stack)  # type: ignore[arg-type]
    summary = {
        "machine": machine.facts(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rounds": options.rounds,
        "startup_s": startup,
        "cpu_bound": cpu_bound,
        "trivial": trivial,
        "redis_floor_ops_per_s": floor,
    }
    if options.json_path:
        with open(options.json_path, "w") as out:
            json.dump(summary, out, indent=2)
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    print(f"machine: {machine.describe()}")
    print(f"load average before {summary['load_before'][0]:.2f}, after {summary['load_after'][0]:.2f}")
    print(f"\n{CPU_JOB.describe()}, {WORKERS} worker processes, median of {summary['rounds']} rounds:")
    for name, entry in summary["cpu_bound"].items():
        line = f"  {name:26} {entry['wall_s_median']:.3f} s"
        if "idle_s_median" in entry:
            line += f" (idle {entry['idle_s_median']:.3f} s/process)"
        if "ratio_to_processes_median" in entry:
            used = entry["cpu_s_median"]
            line += (
                f"  {entry['ratio_to_processes_median']:.2f}x processes  CPU s: client {used['client']:.2f}, "
                f"worker main {used['main']:.2f}, pool {used['children']:.2f}, redis {used['redis']:.2f}"
            )
        print(line)
    print(f"\n{TRIVIAL_JOB.describe()} (trivial chunks):")
    for name, entry in summary["trivial"].items():
        rate = TRIVIAL_JOB.chunks / entry["wall_s_median"]
        line = f"  {name:26} {rate:6.0f} chunks/s"
        if "cpu_s_median" in entry:
            per = {role: 1000 * value / TRIVIAL_JOB.chunks for role, value in entry["cpu_s_median"].items()}
            line += (
                f"  CPU ms/chunk: client {per['client']:.2f}, worker main {per['main']:.2f}, "
                f"pool {per['children']:.2f}, redis {per['redis']:.2f} = {per['total']:.2f}"
            )
        print(line)
    if summary["redis_floor_ops_per_s"]:
        print("\nRedis floor (redis-benchmark on the same socket), requests/s:")
        for name, rate in summary["redis_floor_ops_per_s"].items():
            print(f"  {name:32} {rate:10.0f}")
    print(f"\nstack start-up (not in any wall time): {summary['startup_s']}")


if __name__ == "__main__":
    main()
