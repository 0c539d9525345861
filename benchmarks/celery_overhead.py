"""Where a broker's time goes: Celery on Redis — and on RabbitMQ — against in-host processes, on this
machine, in one run.

Three measurements, each repeated in rounds (every variant once per round, so a slow spell of a shared
machine spreads over all of them), reported as medians with the machine's facts and load:

1. CPU-bound: `sum 10^8` in 16 chunks on 2 worker processes — the `processes` executor against the
   `celery` executor: prefork (1 worker × 2 pool processes) without and with task events, 2 solo
   workers, and prefork on a private RabbitMQ node (`--broker rabbitmq`; Redis keeps the results). The
   ratio is taken per round. Each run's idle time per worker process (wall minus the
   time spent in chunks) is the broker's latency, which a busy machine does not hide; CPU seconds per
   process role (the client, each worker's main process, its pool processes, the broker, and the result
   backend where it is a server of its own) show the broker's work, independently of what else the
   machine runs.
2. Trivial chunks: `sum 2000` in 2000 chunks — chunks per second from sending the chord to the answer,
   and CPU milliseconds per chunk by role.
3. The Redis floor: `redis-benchmark` against the same embedded Redis (its Unix socket).

Next to conquer's deployments runs the starting point: Celery as usually written (`DEFAULTS`).

Usage::

    python benchmarks/celery_overhead.py                 # about 3 minutes on 2 cores
    python benchmarks/celery_overhead.py --rounds 7 --json out.json
    python benchmarks/celery_overhead.py --quick --rounds 1   # small jobs: does it run? (its test)

Where Debian's rabbitmq-server is not installed, the RabbitMQ variant is left out, saying so.
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
from workers.celery.brokers import rabbitmq
from workers.celery.chord import Deployment, run
from workers.celery.client import Client
from workers.celery.localstack import LocalStack, local_stack, node_layout
from workers.celery.settings import Settings

#: The variant on a private RabbitMQ node (the others run on the embedded Redis).
RABBITMQ = "celery prefork, RabbitMQ"

CPU_JOB = Job("sum", 10**8, 16)
TRIVIAL_JOB = Job("sum", 2000, 2000)
#: `--quick`: the same measurements on small jobs, to check the script runs (its test), not to quote.
QUICK_JOBS = (Job("sum", 10**6, 16), Job("sum", 200, 200))
#: Requests per redis-benchmark test (`--quick`: a tenth).
FLOOR_REQUESTS = 100_000
WORKERS = 2

#: name -> (pool, task events, broker). Each is deployed as the celery executor deploys 2 worker
#: processes (`node_layout`): prefork as 1 worker × 2 pool processes, solo as 2 workers.
VARIANTS = {
    "celery prefork": ("prefork", False, "redis"),  # what `conquer run/compare --on celery` starts
    "celery prefork+events": ("prefork", True, "redis"),  # as `conquer up` and compose run it, for Flower
    "celery solo": ("solo", False, "redis"),
    RABBITMQ: ("prefork", False, "rabbitmq"),  # `--on celery --broker rabbitmq`
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
    #: The broker's server: the embedded Redis, or the RabbitMQ node's processes (epmd included).
    broker: float
    #: The result backend's server where it is not the broker's (the embedded Redis beside RabbitMQ).
    backend: float

    @property
    def total(self) -> float:
        return self.client + self.main + self.children + self.broker + self.backend


ROLES = ("client", "main", "children", "broker", "backend", "total")


def cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def snapshot(stack: LocalStack) -> Roles:
    mains = [psutil.Process(p.pid) for p in stack.workers]
    children = [child for main in mains for child in main.children(recursive=True)]
    redis = cpu(psutil.Process(stack.broker.pid)) if stack.broker else 0.0
    if stack.node is None:  # Redis is the broker and keeps the results too: one server
        broker, backend = redis, 0.0
    else:
        broker, backend = sum(map(cpu, stack.node.processes())), redis
    return Roles(
        client=cpu(psutil.Process()),
        main=sum(map(cpu, mains)),
        children=sum(map(cpu, children)),
        broker=broker,
        backend=backend,
    )


def delta(after: Roles, before: Roles) -> Roles:
    return Roles(*(getattr(after, role) - getattr(before, role) for role in ROLES[:-1]))


def unavailable(broker: str) -> str | None:
    """Why a stack on `broker` cannot be started here, or None."""
    if broker == "rabbitmq":
        try:
            rabbitmq.server_binary()
        except RuntimeError as error:
            return str(error)
    return None


@contextmanager
def stacks() -> Iterator[dict[str, Deployment]]:
    with ExitStack() as started:
        deployments = {}
        for name, (pool, events, broker) in VARIANTS.items():
            why = unavailable(broker)
            if why:
                print(f"{name}: not measured: {why}")
                continue
            settings, nodes = node_layout(Settings(worker_pool=pool, task_events=events), WORKERS)
            stack = started.enter_context(local_stack(settings, workers=nodes, broker=broker))
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
                role: statistics.median(getattr(r, role) for r in roles[name]) for role in ROLES
            }
        result[name] = entry
    return result


def redis_floor(stack: LocalStack, requests: int = FLOOR_REQUESTS) -> dict[str, float]:
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
            [binary, "-s", sock, "-n", str(requests), "-t", "ping,lpush,rpop", "--csv", *extra],
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
    parser.add_argument("--quick", action="store_true", help="small jobs: checks it runs (about a minute)")
    options = parser.parse_args()
    cpu_job, trivial_job = QUICK_JOBS if options.quick else (CPU_JOB, TRIVIAL_JOB)
    requests = FLOOR_REQUESTS // 10 if options.quick else FLOOR_REQUESTS
    load_before = os.getloadavg()
    with stacks() as deployments:
        startup = {name: d.setup_s for name, d in deployments.items()}
        cpu_bound = rounds(cpu_job, deployments, options.rounds)
        trivial = rounds(trivial_job, deployments, options.rounds)
        floor = redis_floor(next(iter(deployments.values())).stack, requests)  # type: ignore[arg-type]
    summary = {
        "machine": machine.facts(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rounds": options.rounds,
        "cpu_job": cpu_job.describe(),
        "trivial_job": trivial_job.describe(),
        "trivial_chunks": trivial_job.chunks,
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
    print(f"\n{summary['cpu_job']}, {WORKERS} worker processes, median of {summary['rounds']} rounds:")
    for name, entry in summary["cpu_bound"].items():
        line = f"  {name:26} {entry['wall_s_median']:.3f} s"
        if "idle_s_median" in entry:
            line += f" (idle {entry['idle_s_median']:.3f} s/process)"
        if "ratio_to_processes_median" in entry:
            used = entry["cpu_s_median"]
            line += (
                f"  {entry['ratio_to_processes_median']:.2f}x processes  CPU s: client {used['client']:.2f}, "
                f"worker main {used['main']:.2f}, pool {used['children']:.2f}, {servers(name, used)}"
            )
        print(line)
    print(f"\n{summary['trivial_job']} (trivial chunks):")
    for name, entry in summary["trivial"].items():
        chunks = summary["trivial_chunks"]
        rate = chunks / entry["wall_s_median"]
        line = f"  {name:26} {rate:6.0f} chunks/s"
        if "cpu_s_median" in entry:
            per = {role: 1000 * value / chunks for role, value in entry["cpu_s_median"].items()}
            line += (
                f"  CPU ms/chunk: client {per['client']:.2f}, worker main {per['main']:.2f}, "
                f"pool {per['children']:.2f}, {servers(name, per)} = {per['total']:.2f}"
            )
        print(line)
    if summary["redis_floor_ops_per_s"]:
        print("\nRedis floor (redis-benchmark on the same socket), requests/s:")
        for name, rate in summary["redis_floor_ops_per_s"].items():
            print(f"  {name:32} {rate:10.0f}")
    print(f"\nstack start-up (not in any wall time): {summary['startup_s']}")


def servers(name: str, used: dict[str, float]) -> str:
    """The servers' share: Redis alone, or RabbitMQ and the Redis that keeps the results."""
    if VARIANTS.get(name, ("", False, "redis"))[2] == "rabbitmq":
        return f"rabbitmq {used['broker']:.2f}, redis (results) {used['backend']:.2f}"
    return f"redis {used['broker']:.2f}"


if __name__ == "__main__":
    main()
