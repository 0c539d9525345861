"""Series `recovery`: how long Celery takes to get the exact answer back after a fault, per fault and
broker (issue 12, part 5).

Runs on several hosts (`conquer.hosts_celery`: 2 network namespaces, one `celery worker` with one
pool process on each, a private broker on their link), so that a partition can be one of the faults.
For each broker — Redis (with an append-only file, so that it can be restarted) and a private
RabbitMQ node — one deployment runs interleaved rounds: the job once without a fault, then once per
fault, in the order of FAULTS, each fault landing in the middle of a chunk (once `celery inspect
active` shows one running):

- ``worker-sigkill``: SIGKILL to the main process of the worker running it (its pool process gets
  SIGKILL too: Celery sets it as its death signal); respawned after the answer.
- ``pool-sigkill``: SIGKILL to the pool process running it; the worker replaces it itself.
- ``partition``: its host's link cut silently (`Hosts.cut`); healed after the answer.
- ``broker-restart``: the broker stopped cleanly and started again on its port and data.

After each run the deployment is restored and settled — every worker answers a ping, none runs a
task, the broker holds nothing (on Redis nothing unacknowledged either: it would come back into the
next run) — with a deadline on every wait.

Figures per faulted run: the time from the fault to the exact answer (the job store's finish time
minus the fault's), and the **recovery cost** = the run's wall time − the median wall time of the
fault-free runs of the same deployment (the job's own time). Every answer is checked, and the
combine step must run once: wrong answers and double combines are counted, and fail the point.

Needs root, `ip` and `nft` (the hosts), and `rabbitmq-server` for the RabbitMQ half: without them the
series, or its RabbitMQ half, is recorded as skipped in one line. It is slow (the Redis faults wait
for the 20 s visibility timeout): `conquer bench` runs it only when named (`--series recovery`).
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from conquer.bench.context import Context
from conquer.bench.points import Point, Series, timed
from tasks import Job, check

if TYPE_CHECKING:
    from conquer.hosts import Host
    from conquer.hosts_celery import CeleryHosts
    from workers.celery.jobstore import JobStatus

#: The faults, in the order each round runs them: name -> how the table and chart say it.
FAULTS = {
    "worker-sigkill": "worker SIGKILL",
    "pool-sigkill": "pool SIGKILL",
    "partition": "partition",
    "broker-restart": "broker restart",
}
#: The fault-free run's name among the points' `fault` params.
NO_FAULT = "none"

#: The brokers, in the order they run: name -> URL scheme (`conquer.hosts_celery.BROKERS_ON_LINK`).
BROKERS = {"redis": "redis", "rabbitmq": "amqp"}

#: Worker hosts, one worker process each.
HOSTS = 2

#: 6 chunks of 2 s (4 items of 0.5 s) on 2 hosts: 3 rounds of chunks, about 6 s without a fault. A
#: chunk is long enough to be seen running and faulted in its middle (the look takes up to 1 s), and
#: only sleeps, so its length does not depend on the machine's load. The same job in every profile:
#: a shorter chunk would be over before the fault.
JOB = Job("download", 24, 6, latency=0.5)
CHUNK_S = JOB.n / JOB.chunks * JOB.latency

#: Deadlines, which only keep a broken run from hanging: a chunk of the job seen running; the answer
#: (Redis: the 20 s visibility timeout, a broker's restart, and the chunks after them); the
#: deployment restored (a worker's cold start, or a RabbitMQ worker's reconnection after a partition:
#: kombu's back-off grows while the link is cut); the broker and workers idle (a chunk given back on
#: Redis after the visibility timeout runs first).
SEEN_S = 60.0
ANSWER_S = 180.0
RESTORE_S = 120.0
SETTLE_S = 90.0


class Broken(Exception):
    """A run that could not be completed (one line: which step, and why)."""


@dataclass
class Outcome:
    """One faulted run."""

    wall_s: float
    fault_to_answer_s: float
    exact: bool
    value: int | None
    combines: int
    #: Chunk runs beyond one per chunk (a chunk run again after the fault, counted once in the answer).
    extra_runs: int
    #: The faulted chunk had ended on its host before the fault: nothing was faulted mid-chunk.
    off_chunk: bool


def measure(context: Context) -> Series:
    from conquer import hosts, hosts_celery
    from workers.celery.brokers import rabbitmq
    from workers.celery.brokers.redis import RESTORE_INTERVAL_S
    from workers.celery.settings import Settings

    profile, reporter = context.profile, context.reporter
    repeats = profile.recovery_repeats or profile.repeats
    series = Series(
        "recovery",
        "Recovery from faults, on several hosts",
        f"Celery on {HOSTS} worker hosts (network namespaces; one `celery worker` with one pool process "
        f"each) and a private broker on their link (Redis with an append-only file, or a RabbitMQ node), "
        f"running {JOB.describe()}, {JOB.latency:g} s per item: chunks of {CHUNK_S:g} s. Each broker's "
        f"deployment runs {repeats} "
        "interleaved round(s): the job without a fault, then once per fault in this order, each in the "
        "middle of a chunk: worker SIGKILL (the main process of the worker running it), pool SIGKILL "
        "(its pool process), partition (its host's link cut silently, healed after the answer), broker "
        "restart (stopped cleanly, started again on its port and data), each half a chunk after the "
        "job's first chunks started. A killed worker stays down and a cut link cut until the answer, so "
        "the rest of the job runs on one host; then the worker is respawned or the link healed, and "
        "every worker answers a ping before the next run. "
        "*fault → answer*: from the fault to the exact answer. **Recovery cost** = the faulted run's wall "
        "time − the median fault-free wall time of the same deployment (the job's own time). Every answer "
        "is checked against its closed form and the combine step must run once; a fault that came after "
        "its chunk had ended is left out and counted.",
        parameters={
            "kind": JOB.kind,
            "n": JOB.n,
            "chunks": JOB.chunks,
            "latency": JOB.latency,
            "chunk_s": CHUNK_S,
            "hosts": HOSTS,
            "faults": list(FAULTS),
            "brokers": list(BROKERS),
            "repeats": repeats,
            "visibility_timeout_s": Settings().visibility_timeout,
            "restore_interval_s": RESTORE_INTERVAL_S,
            "heartbeat_s": rabbitmq.HEARTBEAT_S,
        },
    )
    with timed(series), terminated_as_interrupted():
        why = hosts.unavailable()
        if why is not None:
            series.skip("every fault on every broker", why)
            return series
        runnable = {}
        for name, scheme in BROKERS.items():
            missing = hosts_celery.unavailable(scheme)
            if missing is None:
                runnable[name] = scheme
            else:
                series.skip(name, missing)
        reporter.begin(series, len(runnable) * repeats * (1 + len(FAULTS)))
        for name, scheme in runnable.items():
            series.points += measure_broker(name, scheme, repeats, context)
    series.derived = totals(series.points)
    return series


@contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """While measuring, a SIGTERM (`timeout`, a CI job cancelled) ends the run as Ctrl-C does: the
    hosts, their processes and the brokers are removed on the way out, and what was measured is
    written — the hosts' processes, unlike an embedded stack's, do not die with this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def measure_broker(name: str, scheme: str, repeats: int, context: Context) -> list[Point]:
    """The fault-free point and one point per fault for one broker, from `repeats` rounds on one
    deployment."""
    from conquer.hosts_celery import celery_hosts

    free = Point(f"{name}: no fault", params(name, NO_FAULT), "wall_s", "s")
    faulted = {fault: Point(f"{name}: {said}", params(name, fault), "fault_to_answer_s", "s")
               for fault, said in FAULTS.items()}  # fmt: skip
    outcomes: dict[str, list[Outcome]] = {fault: [] for fault in FAULTS}
    points = [free, *faulted.values()]
    began = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="conquer-recovery-") as directory,
            celery_hosts(Path(directory), scheme, HOSTS, durable=True) as drill,
        ):
            deployment = {
                "stack": f"{HOSTS} hosts (network namespaces {drill.net.run_id}), one `celery worker` with "
                f"one pool process each, {name} on their link",
                "hosts_run": drill.net.run_id,
                "directory": directory,
                "setup_s": round(time.perf_counter() - began, 3),
            }
            for point in points:
                point.deployment = deployment
            for number in range(1, repeats + 1):
                said = []
                for fault in (NO_FAULT, *FAULTS):
                    point = free if fault == NO_FAULT else faulted[fault]
                    if point.error is None:
                        said.append(one_run(drill, fault, point, outcomes))
                    context.reporter.tick()
                context.reporter.line(f"recovery: {name}, round {number}/{repeats}: {'; '.join(said)}")
    except (RuntimeError, OSError) as error:  # the deployment itself: it did not start, or not stop
        for point in points:
            point.error = point.error or f"the {name} deployment on the hosts failed: {first_line(error)}"
    for fault, point in faulted.items():
        conclude(point, outcomes[fault], free)
    return points


def params(broker: str, fault: str) -> dict[str, Any]:
    return {"broker": broker, "fault": fault, "kind": JOB.kind, "n": JOB.n, "chunks": JOB.chunks,
            "latency": JOB.latency, "hosts": HOSTS}  # fmt: skip


def one_run(drill: CeleryHosts, fault: str, point: Point, outcomes: dict[str, list[Outcome]]) -> str:
    """Run the job once with `fault` (or none) and record it in `point` (or `outcomes`); a run that
    breaks fails its point, and the deployment is restored for the next. What it says for the log."""
    try:
        if fault == NO_FAULT:
            status = answer(drill, drill.client.submit(JOB), time.time())
            settle(drill)
            point.derived.setdefault("answers", []).append(status.value)
            if not exact(status):
                point.verified = False
                point.error = f"wrong answer: {status.value}, expected {check(JOB)} (without a fault)"
                return f"no fault: WRONG ANSWER {status.value}"
            wall = (status.finished or 0) - status.submitted
            point.samples.append(wall)
            return f"no fault {wall:.1f} s"
        outcome = faulted_run(drill, fault)
        outcomes[fault].append(outcome)
        verdict = (
            "" if outcome.exact and outcome.combines == 1 else " WRONG" if not outcome.exact else " TWICE"
        )
        return f"{FAULTS[fault]} → answer {outcome.fault_to_answer_s:.1f} s{verdict}"
    except Broken as error:
        point.error = str(error)
    except Exception as error:  # kombu, redis-py, py-amqp: anything a broker going wrong raises
        point.error = f"{type(error).__name__}: {first_line(error)}"
    restore_all(drill)
    return f"{FAULTS.get(fault, fault)} FAILED"


def faulted_run(drill: CeleryHosts, fault: str) -> Outcome:
    job_id = drill.client.submit(JOB)
    host, index, pool = mid_chunk(drill, job_id)
    node = drill.node_on(host)
    fault_at = time.time()
    if fault == "worker-sigkill":
        os.kill(drill.workers[node].pid, signal.SIGKILL)
    elif fault == "pool-sigkill":
        os.kill(pool, signal.SIGKILL)
    elif fault == "partition":
        drill.net.cut(host)
    elif fault == "broker-restart":
        drill.restart_broker()
    else:
        raise ValueError(f"no fault {fault!r}")
    status = answer(drill, job_id, fault_at)
    off_chunk = fault != "broker-restart" and any(
        drill.host_of(record["host"]) == host and record["ended"] <= fault_at
        for record in drill.records(job_id, index)
    )
    restore(drill, fault, host, pool)
    settle(drill)
    final = drill.client.status(job_id)
    return Outcome(
        wall_s=(status.finished or 0) - status.submitted,
        fault_to_answer_s=(status.finished or 0) - fault_at,
        exact=exact(status),
        value=status.value,
        combines=final.combines,
        extra_runs=final.attempts - JOB.chunks,
        off_chunk=off_chunk,
    )


def mid_chunk(drill: CeleryHosts, job_id: str) -> tuple[Host, int, int]:
    """Half a chunk into the job's first chunks, one seen running: (its host, the chunk, the pool
    process running it).

    Celery lists a task as active once it hands it to the pool, a moment before the chunk counts its
    run: faulted in between, the run would never be counted. So first every host's first chunk has
    counted (`attempts` reaches the number of hosts); then, half a chunk later — a fault at a chunk's
    very start would lose nothing of it — one is seen running (the look takes up to 1 s)."""
    deadline = time.monotonic() + SEEN_S
    while drill.client.status(job_id).attempts < len(drill.nodes):
        if time.monotonic() > deadline:
            raise Broken(f"the job's chunks never started within {SEEN_S:g} s")
        time.sleep(0.02)
    # The fault's moment, chosen: not a wait for something to happen.
    time.sleep(CHUNK_S / 2)
    while (found := drill.running_in(job_id)) is None:
        if time.monotonic() > deadline:
            raise Broken(f"no chunk of the job was seen running within {SEEN_S:g} s")
    host, index, pool = found
    if not pool:
        pools = drill.pool_pids(host)
        if len(pools) != 1:
            raise Broken(f"{host.name}'s worker has {len(pools)} pool processes, not 1")
        pool = pools[0]
    return host, index, pool


def answer(drill: CeleryHosts, job_id: str, since: float) -> JobStatus:
    """The job's status once it is over, within ANSWER_S of `since`."""
    from workers import ExecutorError

    try:
        status = drill.client.wait(job_id, max(1.0, ANSWER_S - (time.time() - since)))
    except ExecutorError as error:  # JobTimeout, BrokerUnreachable: one line each
        raise Broken(first_line(error)) from None
    if status.finished is None:
        raise Broken(f"the job ended {status.state}: {status.error}")
    return status


def exact(status: JobStatus) -> bool:
    return status.value == check(JOB)


def restore(drill: CeleryHosts, fault: str, host: Host, pool: int) -> None:
    """Undo `fault` on `host`: respawn the killed worker, or heal the link; wait until every worker
    answers a ping (after a pool SIGKILL, once the worker has replaced its pool process)."""
    if fault == "worker-sigkill":
        drill.respawn(host)
        return
    if fault == "partition":
        drill.net.heal(host)
    elif fault == "pool-sigkill":
        until(lambda: (pools := drill.pool_pids(host)) != [] and pool not in pools, RESTORE_S,
              f"{host.name}'s worker never replaced its killed pool process")  # fmt: skip
    try:
        drill.wait_for_workers(RESTORE_S)
    except RuntimeError as error:
        raise Broken(f"after the {FAULTS[fault]}: {error}") from None


def restore_all(drill: CeleryHosts) -> None:
    """After a run that broke, wherever it broke: every link healed, the broker up, every worker
    answering (respawned if not), and everything settled — or Broken, and the points after it fail
    on their own."""
    for host in drill.net.hosts:
        with suppress(RuntimeError, OSError):  # nft: no such table (the host was not cut), or no nft
            drill.net.heal(host)
    if drill.broker is not None and (drill.broker.process is None or drill.broker.process.poll() is not None):
        drill.broker.start()
        drill.reconnect()
    for node, process in drill.workers.items():
        if process.poll() is not None:
            drill.respawn(drill.host_of(node))
    try:
        drill.wait_for_workers(RESTORE_S)
        settle(drill)
    except (RuntimeError, Broken):
        pass  # the next run fails with its own reason


def settle(drill: CeleryHosts) -> None:
    """Until the broker holds nothing that could run (again) and no worker runs a task."""
    until(lambda: drill.broker_idle() and not drill.busy(), SETTLE_S,
          "the broker or a worker was still busy with the job")  # fmt: skip


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 0.1 s; Broken after `timeout` s (`what` says what never happened). A
    broker error while polling counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # the broker or the backend away for a moment: ask again
            pass
        if time.monotonic() > deadline:
            raise Broken(f"{what} (after {timeout:g} s)")
        time.sleep(0.1)


def conclude(point: Point, outcomes: list[Outcome], free: Point) -> None:
    """A fault's point from its runs: the fault-to-answer samples (runs that hit mid-chunk), the
    recovery cost of each against the fault-free median, and the counts of what went wrong."""
    on_chunk = [outcome for outcome in outcomes if not outcome.off_chunk]
    point.samples = [outcome.fault_to_answer_s for outcome in on_chunk]
    wrong = [outcome for outcome in outcomes if not outcome.exact]
    twice = [outcome for outcome in outcomes if outcome.combines != 1]
    baseline = free.median
    costs = [outcome.wall_s - baseline for outcome in on_chunk] if baseline is not None else []
    point.derived = {
        "recovery_cost_s": statistics.median(costs) if costs else None,
        "recovery_cost_min_s": min(costs) if costs else None,
        "recovery_cost_max_s": max(costs) if costs else None,
        "recovery_costs_s": [round(cost, 3) for cost in costs],
        "faulted_walls_s": [round(outcome.wall_s, 3) for outcome in on_chunk],
        "answers": [outcome.value for outcome in outcomes],
        "fault_free_wall_s": baseline,
        "wrong_answers": len(wrong),
        "double_combines": len(twice),
        "extra_chunk_runs": [outcome.extra_runs for outcome in outcomes],
        "faults_off_chunk": len(outcomes) - len(on_chunk),
    }
    if point.error is not None:
        return
    if wrong:
        point.verified = False
        point.error = (
            f"wrong answer: {wrong[0].value}, expected {check(JOB)} ({len(wrong)} of {len(outcomes)} runs)"
        )
    elif twice:
        point.error = f"the combine step ran {twice[0].combines} times ({len(twice)} of {len(outcomes)} runs)"
    elif outcomes and not on_chunk:
        point.error = "every fault came after its chunk had ended: nothing was faulted mid-chunk"


def totals(points: list[Point]) -> dict[str, Any]:
    """The series' counts over every faulted run, and each broker's fault-free median."""
    faulted = [point for point in points if point.params["fault"] != NO_FAULT]
    return {
        "faulted_runs": sum(len(point.derived.get("extra_chunk_runs", [])) for point in faulted),
        "wrong_answers": sum(point.derived.get("wrong_answers", 0) for point in faulted),
        "double_combines": sum(point.derived.get("double_combines", 0) for point in faulted),
        "faults_off_chunk": sum(point.derived.get("faults_off_chunk", 0) for point in faulted),
        **{
            f"{point.params['broker']}_fault_free_wall_s": point.median
            for point in points
            if point.params["fault"] == NO_FAULT
        },
    }


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
