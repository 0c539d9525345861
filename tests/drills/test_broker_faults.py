"""Drills where the broker fails: Redis restarted mid-job, Redis up only after the workers, Redis lost
in the middle of a submit. Each runs real `celery worker` processes against a private Redis
(`tests/redis_server.py`) the drill may stop and start, and ends in the exact, independently checked
answer or in one clear line and a documented exit code — never a hang or a traceback.

Timings are printed (`pytest -s`); each time the README promises is asserted on its own, apart from
the deadlines of the waits, which only keep a broken run from hanging.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import CONQUER, conquer, one_line, wait_until
from tests.proxy import Proxy
from tests.redis_server import RedisServer, redis_server
from workers import BrokerUnreachable
from workers.celery.app import WORKER_WRITE_RETRY_S, config
from workers.celery.brokers.redis import key_prefix
from workers.celery.client import NOT_SENT, Client
from workers.celery.jobstore import CANCELLED, FAILURE, SUCCESS
from workers.celery.localstack import LocalStack, local_stack, wait_for_workers
from workers.celery.settings import Settings

#: A download chunk only sleeps (items × latency), so these jobs take the time they say on a busy
#: machine: 16 chunks of 0.4 s on 2 worker processes, about 3.2 s — long enough to act mid-job.
SLOW_JOB = Job("download", 64, 16, latency=0.1)
SLOW_JOB_ARGS = (SLOW_JOB.kind, str(SLOW_JOB.n), "--chunks", str(SLOW_JOB.chunks), "--latency", "0.1")

#: Deadline for a job that has to survive an outage: workers reconnect with a growing back-off
#: (2, 4, 6 ... s) and a chunk whose ack was lost with the connection comes back after the
#: visibility timeout (20 s).
RECOVERY_S = 90


def drill_settings(server: RedisServer) -> Settings:
    """One pool process per worker (so chunks spread over both) and a key prefix of the drill's own;
    the project's time limits and visibility timeout, so the recovery measured is the one promised.

    (Not shorter ones to go faster: with a hard time limit of 5 s, an 8 s outage had pool processes
    killed while they were still retrying to store a result, and billiard then failed to read what
    they had half-written — UnicodeDecodeError in the worker's result pipe — and both workers stopped
    consuming for good.)"""
    return Settings(
        key_prefix=f"drill-{secrets.token_hex(4)}", worker_concurrency=1, task_events=False
    ).with_broker(server.url)


@contextmanager
def drill_stack(
    server: RedisServer, *, wait: bool = True, settings: Settings | None = None
) -> Iterator[tuple[LocalStack, Client]]:
    """Two workers on `server` (with `settings`, or the drill's own), stopped on the way out."""
    with local_stack(settings or drill_settings(server), workers=2, wait=wait) as stack:
        yield stack, Client(stack.app, stack.settings)


def done(client: Client, job_id: str) -> int:
    return client.status(job_id).done


def only_job(server: RedisServer, stack: LocalStack) -> str:
    """The id of the one job on this private Redis (a `submit --wait` prints it only at the end)."""
    pattern = f"{key_prefix(stack.settings)}conquer:job:" + "?" * 16
    with server.client() as redis:
        found = [key.decode().rpartition(":")[2] for key in redis.scan_iter(match=pattern)]
    return found[0] if len(found) == 1 else ""


def waiting_on(process: subprocess.Popen[str], server: RedisServer) -> bool:
    """`process` holds two connections to the server: its job store's, and the subscription that
    wakes it when the answer is published — it is past its start-up and inside its wait."""
    connections = psutil.Process(process.pid).net_connections(kind="tcp")
    to_server = [c for c in connections if c.raddr and c.raddr.port == server.port]
    return sum(c.status == psutil.CONN_ESTABLISHED for c in to_server) >= 2


def worker_logs(stack: LocalStack, lines: int = 15) -> str:
    """The end of each worker's log, for a failing assertion to show what the workers went through."""
    tails = []
    for name in stack.worker_names:
        log = stack.directory / f"{name.partition('@')[0]}.log"
        text = log.read_text(errors="replace").splitlines() if log.exists() else []
        tails.append(f"--- {name}\n" + "\n".join(text[-lines:]))
    return "\n".join(tails)


def assert_new_job_succeeds(env: dict[str, str]) -> None:
    """The workers consume again: a fresh job goes all the way through them."""
    follow_up = conquer("submit", "sum", "1e5", "--wait", "--json", "--timeout", "60", env=env, timeout=90)
    assert follow_up.returncode == ExitCode.OK, follow_up.stderr
    assert json.loads(follow_up.stdout)["value"] == check(Job("sum", 100_000, 16))


# ------------------------------------------------------------------------ 3. Redis restarted mid-job

#: Workers retry a lost broker connection after 2, 4, 6 ... s (kombu's `ensure_connection`
#: defaults): after an outage shorter than the first interval they consume again at most that long
#: after Redis answers. The margin covers fetching a chunk and starting it in a pool process. Measured,
#: Redis answering again -> the first chunk started, at load 7-10 on the 2-core VM: 0.3-2.0 s after a
#: SIGTERM, 0.0-2.0 s after a SIGKILL (5 runs each; 2.0 whenever the first retry came too early).
RECONNECT_S = 2.0
RESUME_MARGIN_S = 1.5

#: A client waiting through an outage exits 3 at its --timeout, counted from its submit; this margin
#: covers sending the chunks after the job's record is seen, its last try, and printing its line.
#: Measured, submit seen -> exit: 0.1-0.3 s past the deadline in 6 runs at load 5-7.
EXIT_MARGIN_S = 1.5


@pytest.mark.parametrize("crash", [False, True], ids=["SIGTERM", "SIGKILL"])
def test_a_job_survives_a_redis_restart_mid_job_with_the_exact_answer(tmp_path: Path, crash: bool) -> None:
    """As the compose stack runs Redis (AOF, fsync every second), restarted cleanly (SIGTERM, as by
    `docker compose restart`) or crashed (SIGKILL, as by the OOM killer): either way nothing is lost —
    Redis writes every command to its AOF before it answers, and only the fsync waits for the next
    second, which matters only if the whole host goes down. Chunks running at the restart may run
    twice (their worker gives their unacknowledged messages back when its connection drops); the
    answer is exact and the combine step runs once."""
    with redis_server(tmp_path, appendonly=True) as server, drill_stack(server) as (stack, client):
        env = stack.settings.to_env()
        submitted = conquer("submit", *SLOW_JOB_ARGS, env=env, timeout=60)
        assert submitted.returncode == ExitCode.OK, submitted.stderr
        job_id = submitted.stdout.strip()
        waiting = subprocess.Popen(
            [CONQUER, "result", job_id, "--timeout", str(RECOVERY_S), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        try:
            wait_until(lambda: waiting_on(waiting, server), 60, "`conquer result` never began waiting")
            wait_until(lambda: done(client, job_id) >= 2, 60, "the job never got going")
            before = done(client, job_id)
            server.restart(crash=crash)
            answering = time.time()
            stdout, stderr = waiting.communicate(timeout=RECOVERY_S + 30)
        finally:
            waiting.kill()
            waiting.communicate()
        assert before < SLOW_JOB.chunks, "the restart was meant to come mid-job"
        assert waiting.returncode == ExitCode.OK, f"{stderr}{worker_logs(stack)}"
        report = json.loads(stdout)
        assert report["value"] == check(SLOW_JOB)
        assert report["verified"] is True
        # Mid-job for real: chunks ran after Redis came back.
        resumed = min(chunk["started"] for chunk in report["chunk_results"] if chunk["started"] > answering)
        recovered = report["finished"] - answering
        # A chunk whose message went back to the queue may run again, even after the job is done:
        # once the broker holds nothing more, the combine step has still run exactly once.
        wait_until(lambda: broker_idle(server, stack), 60, "the broker still holds messages")
        final = client.status(job_id)
        print(
            f"\n[drill 3] {'SIGKILL' if crash else 'SIGTERM'} at {before}/16 chunks done: chunks ran again "
            f"{resumed - answering:.1f} s after Redis answered, the job was done {recovered:.1f} s after; "
            f"{final.attempts - SLOW_JOB.chunks} chunk(s) ran twice"
        )
        assert (final.value, final.combines) == (check(SLOW_JOB), 1)
        assert final.attempts >= SLOW_JOB.chunks
        assert resumed - answering <= RECONNECT_S + RESUME_MARGIN_S  # the README's bound
        assert_new_job_succeeds(env)


def broker_idle(server: RedisServer, stack: LocalStack) -> bool:
    """Nothing queued, nothing taken and unacknowledged: no chunk can run again."""
    prefix = key_prefix(stack.settings)
    with server.client() as redis:
        return redis.llen(f"{prefix}conquer") == 0 and redis.hlen(f"{prefix}unacked") == 0


def test_waiting_through_a_redis_outage_exits_3_at_its_deadline_and_the_job_then_ends_clearly(
    tmp_path: Path,
) -> None:
    """The client gives up at its deadline, naming the lost Redis; the workers don't: a chunk that
    finishes while Redis is away keeps trying to record its result (WORKER_WRITE_RETRY_S), so after an
    outage shorter than that the job completes with the exact answer."""
    password = secrets.token_hex(8)
    with (
        redis_server(tmp_path, appendonly=True, password=password) as server,
        drill_stack(server) as (stack, client),
    ):
        env = stack.settings.to_env()
        deadline_s = 5  # Redis stays away this long and a little more: under WORKER_WRITE_RETRY_S
        began = time.monotonic()
        waiting = subprocess.Popen(
            [CONQUER, "submit", *SLOW_JOB_ARGS, "--wait", "--timeout", str(deadline_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        try:
            wait_until(lambda: bool(only_job(server, stack)), 60, "the job was never submitted")
            submitted = time.monotonic()  # the client's wait begins right after this (the chunks' send)
            job_id = only_job(server, stack)
            wait_until(lambda: done(client, job_id) >= 2, 60, "the job never got going")
            server.stop()
            stopped = time.monotonic()
            stdout, stderr = waiting.communicate(timeout=deadline_s + 30)
        finally:
            waiting.kill()
            waiting.communicate()
        ended = time.monotonic()
        assert waiting.returncode == ExitCode.BROKER_UNREACHABLE, stderr
        line = one_line(stderr)
        assert f"lost Redis at redis://:***@127.0.0.1:{server.port}/0" in line
        assert f"ask later: conquer result {job_id}" in line
        assert password not in stderr + stdout
        # It waited its whole deadline (counted from after its start-up and submit), and no longer
        # than the README's bound: EXIT_MARGIN_S past it.
        assert ended - began >= deadline_s
        assert ended - submitted <= deadline_s + EXIT_MARGIN_S
        server.start()
        came_back = time.monotonic()
        # The premise of an exact answer: Redis came back while the workers were still trying.
        assert came_back - stopped < WORKER_WRITE_RETRY_S
        result = conquer("result", job_id, "--timeout", f"{RECOVERY_S}", "--json", env=env, timeout=120)
        finished = time.monotonic() - came_back
        assert result.returncode == ExitCode.OK, f"{result.stderr}{worker_logs(stack)}"
        assert json.loads(result.stdout)["value"] == check(SLOW_JOB)
        print(
            f"\n[drill 3] outage: the CLI gave up {ended - submitted:.1f} s after its submit (deadline "
            f"{deadline_s} s); {finished:.1f} s after Redis came back the job was done, exact"
        )
        assert_new_job_succeeds(env)


# --------------------------------------------------------------------- 4. Redis up after the workers


def test_workers_started_before_redis_serve_once_it_is_up(tmp_path: Path) -> None:
    with redis_server(tmp_path, started=False) as server, drill_stack(server, wait=False) as (stack, client):
        serving = serve_once_the_broker_is_up(stack, client, server.start, 60)
        print(f"\n[drill 4] workers answered {serving:.1f} s after Redis came up")


def serve_once_the_broker_is_up(
    stack: LocalStack, client: Client, start_broker: Callable[[], None], deadline_s: float
) -> float:
    """Workers started while the broker is down: wait until each has failed to connect (none may give
    up and exit), start the broker, and check they then answer and run a job to its exact answer.
    Returns seconds from the broker's start to every worker answering."""
    logs = [stack.directory / f"{name.partition('@')[0]}.log" for name in stack.worker_names]

    def every_worker_failed_to_connect() -> bool:
        stack.check_alive()  # they keep trying; none may give up and exit
        return all(log.exists() and "Cannot connect to" in log.read_text() for log in logs)

    wait_until(every_worker_failed_to_connect, 60, "the workers never tried to reach the broker")
    start_broker()
    up = time.monotonic()
    wait_for_workers(stack, timeout=deadline_s)
    serving = time.monotonic() - up
    job = Job("sum", 100_000, 8)
    status = client.wait(client.submit(job), 60)
    assert (status.state, status.value) == (SUCCESS, check(job)), status.error
    assert set(status.workers) <= set(stack.worker_names)
    return serving


# ---------------------------------------------------------------------- 5. Redis lost during submit


class DroppingProxy(Proxy):
    """A TCP proxy in front of Redis that drops the connection carrying the `cut_at`-th LPUSH (kombu
    queues each message with one), forwarding only what came before that command, and then turns
    every connection away for `outage_s` seconds: a broker lost in the middle of a submit."""

    #: The start of an LPUSH in RESP, as redis-py writes it: an array of 3, then the command's name.
    LPUSH = b"*3\r\n$5\r\nLPUSH\r\n"

    def __init__(self, target: int, *, cut_at: int, outage_s: float) -> None:
        super().__init__(("127.0.0.1", target), "dropping-proxy")
        self.cut_at = cut_at
        self.outage_s = outage_s
        self.lpushes = 0
        self.refusing_until = 0.0

    def admits(self) -> bool:
        return time.monotonic() >= self.refusing_until

    def passed(self, received: bytes) -> tuple[bytes, bool]:
        cut = self._cut_point(received)
        if cut is None:
            return received, False
        self.refusing_until = time.monotonic() + self.outage_s
        return received[:cut], True

    def _cut_point(self, received: bytes) -> int | None:
        at = received.find(self.LPUSH)
        while at != -1:
            self.lpushes += 1
            if self.lpushes == self.cut_at:
                return at
            at = received.find(self.LPUSH, at + 1)
        return None


def queued_tasks(server: RedisServer, settings: Settings) -> list[str]:
    """The task ids of every message waiting in the chunk queue (or delivered and not yet acked)."""
    prefix = key_prefix(settings)
    queue = prefix + config(settings)["task_default_queue"]
    with server.client() as redis:
        messages = [json.loads(raw) for raw in redis.lrange(queue, 0, -1)]
        messages += [json.loads(raw)[0] for raw in redis.hvals(prefix + "unacked")]
    return [message["headers"]["id"] for message in messages]


def never_runs(settings: Settings, job_id: str) -> str:
    """When workers serve later, no chunk of the job that was not sent runs — and a job after it does.
    Returns what `conquer status` says of it."""
    with local_stack(settings, workers=2) as stack:
        client = Client(stack.app, stack.settings)
        follow_up = Job("sum", 1_000, 4)
        assert client.wait(client.submit(follow_up), 60).value == check(follow_up)
        status = client.status(job_id)
        assert status.state in (FAILURE, CANCELLED)
        assert status.error == NOT_SENT
        assert status.done == 0
        assert client.records(job_id) == []
        return conquer("status", job_id, env=stack.settings.to_env()).stdout


def failed_submit(settings: Settings, job: Job) -> tuple[str, float]:
    """Submit `job` through a client of `settings`: the failure it reported ('' if none) and how long
    the submit took."""
    sender = Client.connect(settings)
    try:
        began = time.monotonic()
        try:
            sender.submit(job)
        except BrokerUnreachable as error:
            return str(error), time.monotonic() - began
        return "", time.monotonic() - began
    finally:
        sender.close()


def test_a_submit_that_loses_redis_midway_leaves_no_chunk_to_run(tmp_path: Path) -> None:
    """Without all-or-nothing sending, the chunks sent before the drop would sit in the queue, and the
    workers would later run part of a job whose chord can never complete."""
    job = Job("sum", 16_000, 16)
    with (
        redis_server(tmp_path) as server,
        DroppingProxy(server.port, cut_at=4, outage_s=1.5) as proxy,
    ):
        settings = drill_settings(server)
        through_proxy = settings.with_broker(f"redis://127.0.0.1:{proxy.port}/0")
        failure, took = failed_submit(through_proxy, job)
        assert proxy.lpushes >= proxy.cut_at, "the connection was meant to drop during the send"
        assert f"to redis://127.0.0.1:{proxy.port}/0 failed" in failure
        assert "none of its chunks will run" in failure
        job_id = failure.split()[2]
        assert [task for task in queued_tasks(server, settings) if task.startswith(job_id)] == []
        shown = never_runs(settings, job_id)
        assert NOT_SENT in shown
        print(f"\n[drill 5] submit failed after {took:.1f} s with: {failure}")
