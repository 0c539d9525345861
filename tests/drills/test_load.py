"""Load: 50 jobs × 16 chunks submitted at once from 4 client processes to 2 workers, on a private Redis
(so that its memory is the stack's alone): every answer exact, and afterwards nothing left behind —
no key without a TTL but kombu's own, and Redis's memory back near where it started once the keys'
TTLs have run out.

The wall time (first submit to last answer) is printed (`pytest -s`) and asserted against the
README's bound, LOAD_BOUND_S — apart from the deadline of the waits, which only keeps a broken run
from hanging.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from tasks import Job, check
from tests.conftest import keys_by_ttl
from tests.redis_server import redis_server
from workers.celery.client import Client
from workers.celery.jobstore import SUCCESS
from workers.celery.localstack import local_stack
from workers.celery.settings import Settings

JOBS = 50
CHUNKS = 16
CLIENTS = 4

#: Each job adds up 1..n for its own n, so that no two jobs share an answer: a result delivered to the
#: wrong job could not pass for the right one.
SIZES = [16_000 + job for job in range(JOBS)]

#: A deadline for the waits: a broken run fails here instead of hanging (it is not the bound).
LOAD_DEADLINE_S = 120

#: The README's bound on the wall time, first submit to last answer: 800 chunks cost about 3 ms of
#: CPU each across the client, the workers and Redis, so the load is CPU-bound and its wall time
#: grows with whatever else the 2 cores run. Measured on the 2-core VM: 2.5-3.1 s quiet; 5.4-12.8 s in 7
#: runs at load 2-9 (other test suites running). The bound allows about twice the worst of those.
LOAD_BOUND_S = 30

#: One client process: it submits its share of the jobs one after the other without waiting, so all
#: of them are in flight together, then waits for each and prints one JSON line per job.
CLIENT = f"""
import json, sys
from tasks import Job
from workers.celery.settings import settings
from workers.celery.client import Client

client = Client.connect(settings())
try:
    jobs = [(int(n), client.submit(Job("sum", int(n), {CHUNKS}))) for n in sys.argv[1:]]
    for n, job_id in jobs:
        status = client.wait(job_id, {LOAD_DEADLINE_S})
        print(json.dumps({{"n": n, "id": job_id, "state": status.state, "value": status.value}}))
finally:
    client.close()
"""

#: How far Redis's used_memory may end above its starting point once every job's keys are gone.
#: Data is not all it counts: client query and output buffers grow with a burst of traffic and are
#: shrunk by Redis's cron a little later, so both readings are taken once it has settled
#: (`settled_memory`) — and even settled, on an idle stack holding the same four keys, readings were
#: seen 130 KB apart. 256 KB is above that noise; growth beyond it is memory the load left behind
#: outside any key (every key is checked for a TTL separately).
MEMORY_TOLERANCE = 256 * 1024

#: used_memory has settled when three readings SETTLE_INTERVAL_S apart stay within SETTLE_BYTES; on
#: an idle 2-core machine that took 2–10 s after the burst, longer under load.
SETTLE_INTERVAL_S = 0.25
SETTLE_BYTES = 16 * 1024
SETTLE_MAX_S = 30


def settled_memory(connection: redis.Redis) -> int:
    """Redis's used_memory once its cron has shrunk the buffers a burst of traffic left: the lowest
    reading until three agree (a machine too busy to let them agree within SETTLE_MAX_S still gives
    the floor it reached — a measurement, not a condition to wait for)."""
    readings: list[int] = []
    deadline = time.monotonic() + SETTLE_MAX_S
    while time.monotonic() < deadline:
        readings.append(int(connection.info("memory")["used_memory"]))
        recent = readings[-3:]
        if len(recent) == 3 and max(recent) - min(recent) <= SETTLE_BYTES:
            break
        time.sleep(SETTLE_INTERVAL_S)
    return min(readings)


def expire_now(connection: redis.Redis, keys: list[str]) -> None:
    """What the keys' TTLs will do anyway, now: a test cannot wait a day (or even a minute)."""
    for start in range(0, len(keys), 500):
        connection.delete(*keys[start : start + 500])


def exact_load(env: dict[str, str]) -> tuple[list[dict[str, Any]], float]:
    """JOBS jobs of SIZES from CLIENTS client processes at once, against the stack `env` names; check
    that every answer came back exact, and return the answers (`id`, `n`, `state`, `value`) and the
    wall time."""
    shares = [SIZES[index::CLIENTS] for index in range(CLIENTS)]
    began = time.monotonic()
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, *map(str, share)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for share in shares
    ]
    outputs = []
    try:
        for process in clients:
            remaining = LOAD_DEADLINE_S - (time.monotonic() - began)
            stdout, stderr = process.communicate(timeout=max(remaining, 1))
            assert process.returncode == 0, stderr
            outputs.append(stdout)
    finally:
        for process in clients:
            process.kill()
            process.communicate()
    wall = time.monotonic() - began
    answers = [json.loads(line) for stdout in outputs for line in stdout.splitlines()]
    assert sorted(answer["n"] for answer in answers) == SIZES
    wrong = [a for a in answers if a["state"] != SUCCESS or a["value"] != check(Job("sum", a["n"], CHUNKS))]
    assert wrong == []
    return answers, wall


def test_50_jobs_from_4_clients_are_all_exact_and_leave_redis_as_they_found_it(tmp_path: Path) -> None:
    settings = Settings(key_prefix=f"load-{secrets.token_hex(4)}", worker_concurrency=1, task_events=False)
    with (
        redis_server(tmp_path) as server,
        server.client() as connection,
        local_stack(settings.with_broker(server.url), workers=2) as stack,
    ):
        # One job first, so that what every job shares (kombu's bindings, the Lua scripts, the
        # workers' connections) is in place before the starting point is measured.
        client = Client(stack.app, stack.settings)
        warm_up = Job("sum", 1_000, 4)
        assert client.wait(client.submit(warm_up), 60).value == check(warm_up)
        expire_now(connection, keys_by_ttl(connection, stack.app)[0])
        before = settled_memory(connection)

        _, wall = exact_load(stack.settings.to_env())

        expiring, forever = keys_by_ttl(connection, stack.app)
        assert forever == []
        held = sum(int(connection.memory_usage(key) or 0) for key in expiring)
        expire_now(connection, expiring)
        after = settled_memory(connection)
        print(
            f"\n[load] {JOBS} jobs × {CHUNKS} chunks from {CLIENTS} clients on 2 workers: {wall:.1f} s; "
            f"{len(expiring)} keys with a TTL held {held} B; used_memory {before} B before, "
            f"{after} B once they were gone ({after - before:+d} B)"
        )
        assert after - before < MEMORY_TOLERANCE
        assert wall <= LOAD_BOUND_S
