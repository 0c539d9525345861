"""Several hosts, for real (issue 12, part 3): worker hosts as network namespaces on a private bridge
to the broker (`conquer.hosts`), and the two faults only several hosts have — a link cut silently
mid-chunk (a partition: the host lives on, unreachable) and a host crashing whole (every process in
its namespace SIGKILLed) — against Celery on a broker (a parameter: Redis on the link, or a private
RabbitMQ node reached through a relay on it, `conquer.hosts_celery.BROKERS_ON_LINK`) and against the
`managers` executor, which has no redelivery and must fail at once, naming the lost worker.

Redis gives a lost chunk back once its visibility timeout has passed, whatever the fault; RabbitMQ
when the host's connection closes — at once after a crash (its kernel closes the sockets), after
two missed heartbeats after a partition. On RabbitMQ the drills also time the node's own notice
(the host's consumer gone from the queue), and the Redis-only checks (the queue's keys, the restore
mutex) give way to a look at the queue.

Celery: the answer is exact, the combine step runs once, and the cut-off worker's late result, which
lands once its link is back, changes nothing (the store counts it, the answer does not).

Timings are printed (`pytest -s`); bounds are the documented ones with a stated margin, apart from
the deadlines of the waits, which only keep a broken run from hanging.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest

from conquer import hosts, hosts_celery
from conquer.hosts import Host
from conquer.hosts_celery import CeleryHosts
from tasks import Job, check
from tests.conftest import wait_until
from workers import WorkerLost
from workers.celery import brokers
from workers.celery.brokers import rabbitmq
from workers.celery.brokers.redis import RESTORE_INTERVAL_S, key_prefix, redis_client
from workers.celery.jobstore import SUCCESS
from workers.celery.settings import Settings
from workers.managers import AUTHKEY_ENV, BEAT_S, LOST_AFTER_S, run_remote

WHY_NOT = hosts.unavailable()
#: A Celery drill takes about 30 s (the visibility timeout, start-ups); its own waits end it sooner than
#: this on a failure (the project's default, 120 s, is too close on a loaded machine).
pytestmark = [pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""), pytest.mark.timeout(300)]


def why_not_on(scheme: str) -> str | None:
    """Why the drills cannot run on the broker of `scheme` here, or None."""
    if scheme not in brokers.BROKERS:
        return f"no {scheme} broker in workers.celery.brokers"
    return hosts_celery.unavailable(scheme)


#: Each broker the drills run on, one line each.
BROKERS = [
    pytest.param(
        scheme, marks=pytest.mark.skipif(why_not_on(scheme) is not None, reason=why_not_on(scheme) or "")
    )
    for scheme in ("redis", "amqp")
]

#: 4 chunks of 3 s on 2 hosts (one worker process each): long enough to cut a chunk in the middle
#: whatever the load, short enough that the survivor is idle when the lost chunk comes back.
JOB = Job("download", 40, 4, latency=0.3)

#: Redis: a chunk taken by a worker that vanished is back in the queue at most visibility_timeout +
#: RESTORE_INTERVAL_S after it was taken (kombu's sweep); the margin covers the survivor fetching and
#: starting it. The cut comes after the take, so the bound counted from the cut is looser still.
#: Measured, fault -> running again, at load 3.8-11.5 on the 2-core VM: 20.8-21.8 s after a cut,
#: 21.0-21.7 s after a crash (10 runs each), 19.6-21.2 s in the restore-mutex drill (4 runs).
START_MARGIN_S = 3.0

#: The issue's target for every broker: partition detected and the chunk re-run within 30 s.
#: RabbitMQ meets it with its heartbeat (`rabbitmq.HEARTBEAT_S`, 5 s): a connection silent for two
#: beats is closed and its unacknowledged delivery requeued — 10-15 s after the last traffic, by the
#: phase of the node's check; then at most the other host's own chunk (3 s) before it is taken.
#: Measured at load 1.1-4.8, steal under 0.1 %: cut -> the node dropping the cut host's consumer
#: 14.32-14.60 s (median 14.52, 9 runs); cut -> the chunk running again on the other host (idle by
#: then) 14.2-14.6 s (median 14.4, 15 runs).
TARGET_S = 30.0

#: A chunk of JOB runs this long: after a fault, the other host may be that long in a chunk of its
#: own before it can take the lost one.
CHUNK_S = JOB.n / JOB.chunks * JOB.latency

#: RabbitMQ, a host crashed: the host's kernel closes the killed processes' sockets, the relay
#: passes the end on, and the node requeues the delivery at once (a whole worker SIGKILLed on one
#: host: running again 0.011-0.023 s after, docs/guarantees.md). The bound is the issue's 2 s for a
#: killed worker's chunk, counted from when the other host is free to take it (the crash, or the end
#: of the chunk it was running then) — so at most CHUNK_S + 2 s from the crash. Measured (15 runs,
#: load 1.1-4.8): running again 0.01-0.03 s after the other host was free (median 0.01), which was
#: 2.9-3.0 s after the crash (the faults come just after both hosts began a chunk).
AMQP_CRASH_PICKUP_S = 2.0
#: ... and the node drops the crashed host's consumer (closes its connection) as soon as the end
#: reaches it: measured 0.03-0.08 s after the first SIGKILL (median 0.08; 9 runs; polled every
#: 0.05 s, and the SIGKILLs themselves took 0.03 s) — 2 s is the margin for a loaded machine.
AMQP_CRASH_NOTICED_S = 2.0

#: managers: a lost worker is declared at most LOST_AFTER_S + BEAT_S + the parent's poll (0.2 s)
#: after its last beat got through; the margin covers the run unwinding and a loaded machine.
#: Measured, fault -> WorkerLost, at load 3.8-11.5: 1.61-2.16 s after a cut, 1.61-2.29 s after a
#: crash (20 runs each).
MANAGERS_BOUND_S = LOST_AFTER_S + BEAT_S + 0.2 + 1.5


# ---------------------------------------------------------------------------- the Celery set-up


@contextmanager
def celery_hosts(tmp_path: Path, scheme: str, count: int = 2) -> Iterator[CeleryHosts]:
    """Two hosts with a worker each on a private broker (`conquer.hosts_celery.celery_hosts`);
    afterwards, nothing of them may be left: no namespace, link or nftables table of the run, and no
    process of a private RabbitMQ node (its VM, helpers, epmd: all have its directory as HOME)."""
    made: list[str] = []
    try:
        with hosts_celery.celery_hosts(tmp_path, scheme, count) as drill:
            made.append(drill.net.run_id)
            yield drill
    finally:
        for run_id in made:
            assert hosts.leftovers(run_id) == [], "the hosts were not all removed"
        assert node_processes(tmp_path / scheme) == [], "the RabbitMQ node was not all stopped"


def node_processes(directory: Path) -> list[str]:
    """The processes of a private RabbitMQ node whose files are in `directory` (its HOME)."""
    found = []
    for process in psutil.process_iter(["name"]):
        with suppress(psutil.Error):
            if process.environ().get("HOME") == str(directory) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {process.info['name']}")
    return found


def connections_from(drill: CeleryHosts, host: Host) -> int:
    """How many connections the broker host's Redis (the result backend) holds from `host`."""
    with redis_client(drill.settings.result_backend, timeout=5) as redis:
        return sum(1 for client in redis.client_list() if client["addr"].rpartition(":")[0] == host.address)


def broker_idle(drill: CeleryHosts) -> bool:
    """Redis: nothing queued, nothing taken and unacknowledged — no chunk can run again. RabbitMQ:
    nothing ready in the queue (a passive declare counts only those; a delivery still unacknowledged
    shows in `attempts` if it runs again)."""
    if brokers.for_url(drill.settings.broker_url) is rabbitmq:
        return amqp_ready(drill.settings.broker_url) == 0
    prefix = key_prefix(drill.settings)
    with redis_client(drill.settings.result_backend, timeout=5) as redis:
        return bool(redis.llen(f"{prefix}conquer") == 0 and redis.hlen(f"{prefix}unacked") == 0)


@contextmanager
def amqp_queue(url: str, queue: str = "conquer") -> Iterator[Callable[[], tuple[int, int]]]:
    """A look at `queue` on the RabbitMQ node at `url`, on one connection: (messages ready, consumers)
    — a passive declare, which counts neither deliveries unacknowledged nor anything else."""
    from kombu import Connection

    with Connection(url, connect_timeout=3, heartbeat=0) as connection:
        channel: Any = connection.default_channel

        def look() -> tuple[int, int]:
            _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
            return int(ready), int(consumers)

        yield look


def amqp_ready(url: str) -> int:
    with amqp_queue(url) as look:
        return look()[0]


def consumer_dropped(drill: CeleryHosts, since: float) -> float | None:
    """RabbitMQ: seconds from `since` until the node dropped a consumer of the chunks' queue — it
    closed the faulted host's connection and requeued its delivery — polled every 0.05 s. None on a
    broker without consumers to count (Redis)."""
    if brokers.for_url(drill.settings.broker_url) is not rabbitmq:
        return None
    with amqp_queue(drill.settings.broker_url) as look:
        wait_until(lambda: look()[1] < len(drill.nodes), 60, "the node never dropped the host's consumer")
    return time.time() - since


def restore_mutex_ttl(drill: CeleryHosts) -> int:
    """The TTL of kombu's unacked-restore mutex, in seconds (-2: not held)."""
    with redis_client(drill.settings.result_backend, timeout=5) as redis:
        return int(redis.ttl(f"{key_prefix(drill.settings)}unacked_mutex"))


def start_mid_chunk(drill: CeleryHosts) -> tuple[str, Host, int]:
    """Submit JOB and wait until a chunk of it runs on some host: (job id, that host, the chunk)."""
    job_id = drill.client.submit(JOB)
    seen: list[tuple[Host, int]] = []

    def a_chunk_runs() -> bool:
        found = drill.running(job_id)
        if found:
            seen.append(found)
        return found is not None

    wait_until(a_chunk_runs, 60, "no chunk of the job was ever seen running")
    host, index = seen[-1]
    # Celery lists a task as active once it hands it to the pool, a moment before the chunk counts
    # its run in the job store: faulted in between, the run would never be counted (seen once on
    # RabbitMQ: `attempts` 4, not 5). Each host's first chunk has counted once `attempts` reaches
    # the number of hosts — no chunk of 3 s has ended by then.
    wait_until(
        lambda: drill.client.status(job_id).attempts >= len(drill.nodes), 30, "the chunks never counted a run"
    )
    return job_id, host, index


def redelivery_bound(settings: Settings, fault: str = "partition") -> float:
    """The longest a faulted host's chunk may take to run again on another host, from the fault."""
    broker = brokers.for_url(settings.broker_url)
    if broker.REDELIVERS_AFTER_TIMEOUT:
        return settings.visibility_timeout + RESTORE_INTERVAL_S + START_MARGIN_S
    if fault == "crash":
        return CHUNK_S + AMQP_CRASH_PICKUP_S
    return TARGET_S


def free_at(drill: CeleryHosts, job_id: str, faulted: Host, fault_at: float, rerun_at: float) -> float:
    """When the other hosts were first free to take the faulted host's chunk: the fault, or the end
    of the last chunk they finished before the re-run started, whichever is later."""
    ends = [
        float(r["ended"])
        for r in drill.client.store.records(job_id)
        if drill.host_of(r["host"]) != faulted and r["ended"] <= rerun_at
    ]
    return max([fault_at, *ends])


def settle(drill: CeleryHosts, job_id: str) -> None:
    """Until the job succeeded and the broker holds nothing that could run again."""
    wait_until(lambda: drill.client.status(job_id).state == SUCCESS, 120, "the job never succeeded")
    wait_until(lambda: broker_idle(drill), 60, "the broker still holds messages")


# ------------------------------------------------------------------------------- Celery drills


@pytest.mark.parametrize("scheme", BROKERS)
def test_a_worker_host_cut_off_mid_chunk_loses_nothing_and_its_late_result_counts_once(
    tmp_path: Path, scheme: str
) -> None:
    with celery_hosts(tmp_path, scheme) as drill:
        job_id, cut_host, index = start_mid_chunk(drill)
        before = connections_from(drill, cut_host)
        drill.net.cut(cut_host)
        cut_at = time.time()
        noticed_s = consumer_dropped(drill, cut_at)
        # Silent: the broker host is told nothing — its connections from the cut host stay open.
        wait_until(
            lambda: drill.client.status(job_id).attempts > JOB.chunks, 120, "the cut chunk never came back"
        )
        still = connections_from(drill, cut_host)
        settle(drill, job_id)
        rerun = [r for r in drill.records(job_id, index) if drill.host_of(r["host"]) != cut_host]
        assert rerun, f"chunk {index} was never re-run on another host\n{drill.logs_tail()}"
        back_s = rerun[0]["started"] - cut_at
        free_s = free_at(drill, job_id, cut_host, cut_at, rerun[0]["started"]) - cut_at
        answered_s = (drill.client.status(job_id).finished or 0) - cut_at
        drill.net.heal(cut_host)
        healed_at = time.time()
        # The cut-off worker's own run of the chunk ends, and its result lands once its link is back.
        wait_until(
            lambda: any(drill.host_of(r["host"]) == cut_host for r in drill.records(job_id, index)),
            120,
            f"the cut-off worker's late result never arrived\n{drill.logs_tail()}",
        )
        late = next(r for r in drill.records(job_id, index) if drill.host_of(r["host"]) == cut_host)
        wait_until(lambda: broker_idle(drill), 60, "the broker still holds messages")
        final = drill.client.status(job_id)
        mutex_ttl = restore_mutex_ttl(drill)
    print(
        f"\n[partition, {scheme}] {cut_host.name} cut mid-chunk {index}: chunk running again on the other "
        f"host {back_s:.1f} s after the cut (the other host free {free_s:.1f} s after it), "
        f"answer {answered_s:.1f} s after; the late result landed "
        f"{time.time() - healed_at:.1f} s after the heal ({late['ended'] - cut_at:.1f} s after the cut); "
        f"redis connections from the cut host: {before} before, {still} while cut; "
        f"attempts {final.attempts}, combines {final.combines}; restore mutex TTL {mutex_ttl} s"
        + (f"; RabbitMQ dropped the cut host's consumer {noticed_s:.2f} s after the cut" if noticed_s else "")
    )
    assert before > 0, "the cut host had no connection to the broker"
    assert still > 0, "the broker saw the cut host's connections close: the cut was not silent"
    assert (final.state, final.value, final.combines, final.done) == (SUCCESS, check(JOB), 1, JOB.chunks)
    assert final.attempts == JOB.chunks + 1  # the cut chunk ran twice, nothing else did
    bound = redelivery_bound(drill.settings)  # a local: a failing assert must not print the settings,
    assert back_s <= bound  # whose broker URL holds the node's password
    if noticed_s is not None:
        # Noticed by the heartbeat (two beats missed), not by a closed connection: the relay kept the
        # cut silent; and within the target.
        assert 2 * rabbitmq.HEARTBEAT_S <= noticed_s <= TARGET_S, f"noticed {noticed_s:.1f} s after the cut"
    # After a heal, kombu's restore mutex was once found held (TTL 8 s of 10, read ~2 s after the
    # heal: most likely a sweep the cut-off worker had sent into the dead link, delivered late, with
    # no release to follow). Held longer than a visibility timeout, it holds back the next redelivery.
    visibility = drill.settings.visibility_timeout
    assert mutex_ttl < visibility, f"restore mutex held for {mutex_ttl} s more"


@pytest.mark.parametrize("scheme", BROKERS)
def test_a_worker_host_crashing_mid_chunk_loses_nothing(tmp_path: Path, scheme: str) -> None:
    with celery_hosts(tmp_path, scheme) as drill:
        job_id, crashed_host, index = start_mid_chunk(drill)
        crash_began = time.time()
        killed = drill.net.crash(crashed_host)
        crashed_at = time.time()
        noticed_s = consumer_dropped(drill, crash_began)
        settle(drill, job_id)
        rerun = [r for r in drill.records(job_id, index) if drill.host_of(r["host"]) != crashed_host]
        final = drill.client.status(job_id)
        assert rerun, f"chunk {index} was never re-run on another host"
        free_s = free_at(drill, job_id, crashed_host, crashed_at, rerun[0]["started"]) - crashed_at
    back_s = rerun[0]["started"] - crashed_at
    print(
        f"\n[host crash, {scheme}] {crashed_host.name} ({len(killed)} processes SIGKILLed) mid-chunk "
        f"{index}: chunk running again {back_s:.2f} s after ({back_s - free_s:.2f} s after the other "
        f"host was free, {free_s:.2f} s after the crash), answer {(final.finished or 0) - crashed_at:.1f} s "
        f"after; attempts {final.attempts}, combines {final.combines}"
        + (
            f"; RabbitMQ dropped its consumer {noticed_s:.2f} s after the SIGKILLs began "
            f"(which took {crashed_at - crash_began:.2f} s)"
            if noticed_s is not None
            else ""
        )
    )
    assert len(killed) >= 2  # the worker and its pool process, at least
    assert (final.state, final.value, final.combines, final.done) == (SUCCESS, check(JOB), 1, JOB.chunks)
    assert final.attempts == JOB.chunks + 1
    bound = redelivery_bound(drill.settings, "crash")
    assert back_s <= bound
    if noticed_s is not None:
        assert back_s - free_s <= AMQP_CRASH_PICKUP_S, "the chunk waited longer than a free host needs"
        assert noticed_s <= AMQP_CRASH_NOTICED_S, f"the crash noticed {noticed_s:.2f} s after"


#: What a worker does every RESTORE_INTERVAL_S (kombu's unacked-restore sweep), stopped half-way: it
#: takes the Redis mutex that lets one worker at a time restore, with the expiry the stack's transport
#: options give it, and holds it, as a worker whose link is cut mid-sweep does.
HOLD_RESTORE_MUTEX = """
import sys, time
from kombu.transport.redis import Mutex
from workers.celery.app import make_app
from workers.celery.settings import Settings
with make_app(Settings.from_env()).connection() as connection:
    channel = connection.default_channel
    with channel.conn_or_acquire() as client:
        with Mutex(client, channel.unacked_mutex_key, channel.unacked_mutex_expire):
            print("held for", channel.unacked_mutex_expire, "s", flush=True)
            time.sleep(600)
"""


def test_a_host_cut_off_holding_the_restore_mutex_delays_no_redelivery_past_its_bound(tmp_path: Path) -> None:
    """Redis only: a worker host cut off in the middle of its restore sweep keeps kombu's restore mutex
    until the mutex expires, and no worker can give a lost chunk back meanwhile. The mutex's expiry
    (`unacked_mutex_expire`) must therefore be short: here a third host takes it and is cut off, then
    a worker host crashes mid-chunk, and its chunk must still come back within the usual bound."""
    with celery_hosts(tmp_path, "redis", count=3) as drill:
        holder_host = drill.net.hosts[2]
        drill.net.crash(holder_host)  # its worker: the host only holds the mutex
        workers = {node: host for node, host in drill.nodes.items() if host != holder_host}
        drill.nodes = workers
        job_id, crashed_host, index = start_mid_chunk(drill)
        log = tmp_path / "holder.log"
        with log.open("wb") as output:
            drill.net.spawn(
                holder_host, [sys.executable, "-c", HOLD_RESTORE_MUTEX], drill.settings.to_env(), output
            )
        wait_until(lambda: "held for" in log.read_text(), 60, "the third host never took the mutex")
        held = log.read_text().strip()
        drill.net.cut(holder_host)
        drill.net.crash(crashed_host)
        crashed_at = time.time()

        def reruns() -> list[dict[str, Any]]:
            return [r for r in drill.records(job_id, index) if drill.host_of(r["host"]) != crashed_host]

        deadline = redelivery_bound(drill.settings) + 30  # past the bound: how late, if it fails
        wait_until(reruns, deadline, f"chunk {index} not back {deadline:g} s after the crash ({held})")
        rerun = reruns()
    back_s = rerun[0]["started"] - crashed_at
    print(f"\n[restore mutex] {held}; crashed {crashed_host.name}'s chunk {index} back after {back_s:.1f} s")
    bound = redelivery_bound(drill.settings)
    assert back_s <= bound, f"chunk {index} not back in time ({held})"


# ----------------------------------------------------------------------------- managers drills

#: For managers: 6 chunks of 2 s on 2 hosts — every worker is mid-chunk most of the time.
MANAGERS_JOB = Job("download", 60, 6, latency=0.2)


@pytest.mark.parametrize("fault", ["partition", "crash"])
def test_managers_across_hosts_fails_at_once_naming_the_lost_worker(fault: str) -> None:
    """No redelivery: a worker host cut off or crashed mid-chunk ends the run with WorkerLost naming
    that worker, within the heartbeat's loss time — never a hang, never a wrong answer."""
    with hosts.hosts(2) as net:
        run_id = net.run_id
        lost = net.hosts[0]
        faulted: list[float] = []

        def launch(address: tuple[str, int], authkey: bytes) -> None:
            for host in net.hosts:
                command = [sys.executable, "-m", "workers.managers", "worker", f"{address[0]}:{address[1]}"]
                net.spawn(host, [*command, "--name", host.name], {AUTHKEY_ENV: authkey.hex()})

        def fault_once(result: Any) -> None:
            if faulted:
                return
            (net.cut if fault == "partition" else net.crash)(lost)
            faulted.append(time.monotonic())

        with pytest.raises(WorkerLost) as raised:
            run_remote(MANAGERS_JOB, host=net.gateway, workers=2, launch=launch, progress=fault_once)
        failed_s = time.monotonic() - faulted[0]
    assert hosts.leftovers(run_id) == []
    message = str(raised.value)
    print(f"\n[managers, {fault}] {lost.name}: WorkerLost {failed_s:.2f} s after the fault: {message}")
    assert "\n" not in message
    assert f"worker {lost.name} lost" in message
    assert failed_s <= MANAGERS_BOUND_S


# ------------------------------------------------------------------------------------ the relay

#: A client on a host: connects through the relay, names its connection, then blocks holding it open.
HOLD_A_CONNECTION = """
import sys, redis
client = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]))
client.client_setname(sys.argv[3])
print("connected", flush=True)
client.blpop(["nothing-ever"], 0)
"""


def test_a_relay_passes_a_host_s_end_on_and_keeps_a_cut_silent(tmp_path: Path) -> None:
    """How a server listening on loopback only (a private RabbitMQ node) is reached from the hosts:
    `conquer.hosts.relay`. Two hosts connect through it to a Redis on 127.0.0.1; host1 is cut, then
    both crash. host2's end reaches the server (its connection closes there); host1's, dropped on the
    cut link, does not — the relay turns neither into the other."""
    from tests.redis_server import redis_server

    with (
        redis_server(tmp_path) as server,
        hosts.hosts(2) as net,
        hosts.relay(net.gateway, ("127.0.0.1", server.port)) as port,
    ):
        logs = []
        for host in net.hosts:
            log = tmp_path / f"{host.name}.log"
            logs.append(log)
            with log.open("wb") as output:
                command = [sys.executable, "-c", HOLD_A_CONNECTION, net.gateway, str(port), host.name]
                net.spawn(host, command, {}, output)
        wait_until(lambda: all("connected" in log.read_text() for log in logs), 60, "not connected")
        with server.client() as redis:

            def named() -> set[str]:
                return {client["name"] for client in redis.client_list() if client["name"]}

            assert named() >= {"host1", "host2"}
            net.cut(net.hosts[0])
            for host in net.hosts:
                net.crash(host)
            wait_until(lambda: "host2" not in named(), 10, "host2's end never reached the server")
            assert "host1" in named(), "host1's end crossed a cut link"
    assert hosts.leftovers(net.run_id) == []


# ----------------------------------------------------------------------------- clean-up itself


def test_hosts_are_removed_even_when_the_drill_fails(tmp_path: Path) -> None:
    """A drill that raises mid-way, with a host cut and processes running on both — one of them a
    straggler that its parent left behind (started in the background, its parent gone): afterwards no
    namespace, link, nftables table or process of the run is left."""
    made: list[tuple[str, list[str]]] = []
    sleepers: list[subprocess.Popen[bytes]] = []
    straggler = tmp_path / "straggler.pid"

    def failing_drill() -> None:
        with hosts.hosts(2) as net:
            sleepers.extend(net.spawn(host, ["sleep", "600"], {}) for host in net.hosts)
            orphaning = ["sh", "-c", f"setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {straggler}"]
            net.spawn(net.hosts[1], orphaning, {}).wait(10)
            wait_until(lambda: straggler.exists() and straggler.read_text().strip(), 10, "no straggler")
            net.cut(net.hosts[0])
            made.append((net.run_id, hosts.leftovers(net.run_id)))
            raise RuntimeError("the drill failed")

    with pytest.raises(RuntimeError, match="the drill failed"):
        failing_drill()
    run_id, during = made[0]
    assert len(during) == 2 + 3 + 1  # 2 namespaces; the bridge and 2 veths (their other ends are
    # inside the namespaces); the cut's nftables table
    assert hosts.leftovers(run_id) == []
    assert all(sleeper.poll() is not None for sleeper in sleepers)
    assert gone(int(straggler.read_text()))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
