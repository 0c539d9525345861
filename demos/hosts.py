"""Several hosts on one machine (network namespaces): a worker host cut off or crashed mid-chunk —
Celery on Redis (or RabbitMQ) gets the chunk back and the answer exact; the managers executor fails
at once.

Builds worker hosts as Linux network namespaces, each joined to this machine (the "broker host") by
a veth pair on a private bridge (``conquer.hosts``), runs a job on one worker per host
(``conquer.hosts_celery``), and faults one host in the middle of a chunk: ``partition`` cuts its
link silently (nftables drops its frames both ways — it lives on, unreachable, and nobody is told),
``crash`` SIGKILLs every process on it.

With Celery on Redis, the chunk that host took comes back to the other host once Redis's visibility
timeout has passed since it was taken (20 s, found by the 2 s restore sweep): the answer is exact,
the combine step runs once, and after a partition the cut-off worker's own result, landing once its
link is back, changes nothing. With ``--broker rabbitmq`` the chunks go through a private RabbitMQ
node instead (Redis stays the result backend), which acknowledges for real: a crashed host's chunk
is requeued as soon as its closed connection reaches the node, a cut-off host's once two 5 s
heartbeats have gone missing. The managers executor has no redelivery: its workers beat every
0.5 s, and the run fails 2 s after the last beat, naming the lost worker — in one line.

Needs root, ``ip`` and ``nft`` (and ``rabbitmq-server`` for ``--broker rabbitmq``); without them it
says so in one line and exits 10. Everything it made (namespaces, links, nftables tables, processes,
the private broker) is removed at the end, however it ends.

Usage::

    sudo conquer demo hosts
    conquer demo hosts --fault crash
    conquer demo hosts --broker rabbitmq --on celery
    python -m demos.hosts --fault partition --on managers
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from conquer import hosts, hosts_celery
from conquer.exitcodes import ExitCode
from demos.common import argument_parser, heading, run, say, verify
from tasks import Job
from workers import WorkerLost
from workers.celery import brokers
from workers.celery.brokers.rabbitmq import HEARTBEAT_S
from workers.celery.settings import mask
from workers.managers import AUTHKEY_ENV, BEAT_S, LOST_AFTER_S, run_remote

#: 4 chunks of 3 s each on 2 hosts: a chunk is easy to catch in the middle.
CELERY_JOB = Job("download", 40, 4, latency=0.3)
#: 6 chunks of 2 s each on 2 hosts.
MANAGERS_JOB = Job("download", 60, 6, latency=0.2)

#: The longest the demo waits for any one step (a chunk seen running, the answer, the late result).
STEP_DEADLINE_S = 120.0


class Clock:
    """Seconds since the job started, as every line after it says them."""

    def __init__(self) -> None:
        self.zero = time.time()

    def at(self, when: float | None = None) -> str:
        return f"t={(when if when is not None else time.time()) - self.zero:.1f} s"


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + STEP_DEADLINE_S
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {STEP_DEADLINE_S:g} s waiting for {what}")
        time.sleep(0.1)


def built(net: hosts.Hosts) -> None:
    for host in net.hosts:
        say(f"built {host.name}: namespace {host.netns}, address {host.address}, link {host.veth}")
    say(f"the broker host is this machine's namespace, at {net.gateway} on bridge {net.bridge}")


#: The brokers the demo can put the chunks on: its name on the command line -> the URL scheme.
BROKERS = {"redis": "redis", "rabbitmq": "amqp"}


def why_back(drill: hosts_celery.CeleryHosts, fault: str) -> str:
    """Why the lost chunk came back when it did, for the broker the drill runs on."""
    if brokers.for_url(drill.settings.broker_url).REDELIVERS_AFTER_TIMEOUT:
        return (
            f"Redis's visibility timeout of {drill.settings.visibility_timeout} s since the chunk was "
            "taken, found by the 2 s sweep"
        )
    if fault == "partition":
        return f"RabbitMQ closed the silent connection after two missed heartbeats of {HEARTBEAT_S} s"
    return "RabbitMQ requeued it the moment the host's connection closed; the other host took it when free"


def celery_drill(directory: Path, fault: str, scheme: str) -> bool:
    broker = brokers.BROKERS[scheme]
    heading(f"Celery on {broker.NAME}, 2 worker hosts, one host's {fault} mid-chunk")
    with hosts_celery.celery_hosts(directory, scheme) as drill:
        built(drill.net)
        where = f"{broker.NAME} at {mask(drill.settings.broker_url)} (the broker host)"
        if scheme != "redis":
            where += f", results in Redis at {drill.settings.result_backend}"
        say(f"{where}; a celery worker on each host, answering")
        client = drill.client
        job_id = client.submit(CELERY_JOB)
        clock = Clock()
        say(f"job {job_id} started: {CELERY_JOB.describe()}")
        seen: list[tuple[hosts.Host, int]] = []

        def a_chunk_runs() -> bool:
            seen.extend(filter(None, [drill.running(job_id)]))
            return bool(seen)

        wait_for(a_chunk_runs, "a chunk to run")
        host, index = seen[-1]
        say(f"chunk {index} running on {host.name} at {clock.at()}")
        if fault == "partition":
            drill.net.cut(host)
            say(f"link of {host.name} cut at {clock.at()} (silently: its frames are dropped both ways)")
        else:
            killed = drill.net.crash(host)
            say(f"{host.name} crashed at {clock.at()}: {len(killed)} processes SIGKILLed")
        faulted = time.time()

        def rerun() -> list[dict[str, object]]:
            return [r for r in drill.records(job_id, index) if drill.host_of(str(r["host"])) != host]

        wait_for(lambda: client.status(job_id).over, "the answer")
        status = client.status(job_id)
        again = rerun()
        if again:
            started = float(str(again[0]["started"]))
            say(
                f"chunk {index} back, run on {drill.host_of(str(again[0]['host'])).name} from "
                f"{clock.at(started)} ({started - faulted:.1f} s after the fault: {why_back(drill, fault)})"
            )
        say(f"answer at {clock.at(status.finished)}, state {status.state}")
        verified = status.value is not None and verify(CELERY_JOB, status.value)
        if fault == "partition":
            drill.net.heal(host)
            say(f"link of {host.name} back at {clock.at()}")
            wait_for(
                lambda: any(drill.host_of(str(r["host"])) == host for r in drill.records(job_id, index)),
                f"{host.name}'s late result",
            )
            say(f"{host.name}'s own result for chunk {index} landed at {clock.at()}: ignored")
        status = client.status(job_id)
        say(
            f"chunk runs {status.attempts} for {CELERY_JOB.chunks} chunks, "
            f"combine ran {status.combines} time(s), value {status.value}"
        )
        ok = verified and status.combines == 1 and status.value is not None and bool(again)
    say(f"hosts, links, {broker.NAME}{'' if scheme == 'redis' else ', Redis'} and workers removed")
    return ok


def managers_drill(fault: str) -> bool:
    heading(f"the managers executor across 2 hosts, one host's {fault} mid-chunk")
    with hosts.hosts(2) as net:
        built(net)
        lost = net.hosts[0]
        clock = Clock()
        faulted: list[float] = []

        def launch(address: tuple[str, int], authkey: bytes) -> None:
            say(f"server on {address[0]}:{address[1]} (the broker host); a worker joins from each host")
            for host in net.hosts:
                command = [sys.executable, "-m", "workers.managers", "worker", f"{address[0]}:{address[1]}"]
                net.spawn(host, [*command, "--name", host.name], {AUTHKEY_ENV: authkey.hex()})

        def on_chunk(result: object) -> None:
            if faulted:
                return
            say(f"first chunk back at {clock.at()}; now {lost.name}'s {fault}")
            (net.cut if fault == "partition" else net.crash)(lost)
            faulted.append(time.time())
            say(f"{fault} of {lost.name} at {clock.at()}")

        say(f"job: {MANAGERS_JOB.describe()}; workers beat every {BEAT_S:g} s, lost after {LOST_AFTER_S:g} s")
        try:
            report = run_remote(MANAGERS_JOB, host=net.gateway, workers=2, launch=launch, progress=on_chunk)
        except WorkerLost as error:
            after = time.time() - faulted[0]
            say(f"the run failed at {clock.at()} ({after:.1f} s after the {fault}): {error}")
            failed = True
        else:
            say(f"the run finished: {report.value} — the fault came too late to cost a chunk")
            failed = False
    say("hosts and workers removed")
    return failed


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument(
        "--fault", choices=["partition", "crash"], default="partition", help="what befalls one host"
    )
    parser.add_argument(
        "--on", choices=["both", "celery", "managers"], default="both", help="which executor to fault"
    )
    parser.add_argument(
        "--broker",
        choices=list(BROKERS),
        default="redis",
        help="what carries the chunks to the Celery workers (default: redis; the results stay in Redis)",
    )
    arguments = parser.parse_args()
    scheme = BROKERS[arguments.broker]
    why = hosts.unavailable() or hosts_celery.unavailable(scheme)
    if why:
        parser.exit(ExitCode.CANNOT_RUN_HERE, f"cannot run here: {why}\n")
    ok = True
    if arguments.on in ("both", "celery"):
        with tempfile.TemporaryDirectory(prefix="conquer-hosts-") as directory:
            ok = celery_drill(Path(directory), arguments.fault, scheme) and ok
    if arguments.on in ("both", "managers"):
        ok = managers_drill(arguments.fault) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    run(main)
