"""Series `round-trip`: what one message costs — in-host IPC, the Redis floor, and a whole Celery job.

- In-host: one chunk out and its result back through a live worker, over a Pipe, a pair of Queues and a
  Manager's queues (`conquer.bench.ipc_probe`).
- The Redis floor: `redis-benchmark -c 1` PING, LPUSH and RPOP against a private redis-server, over a
  Unix socket and loopback TCP (`conquer.bench.redis_floor`); and a PING from Python through redis-py,
  when it is installed — what a Python client pays on top of the C one.
- Celery: a one-chunk job through the `celery` executor — a chunk task, the chord's combine task and
  the results, i.e. several Redis round trips and two task executions.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import time
from typing import Any

import workers
from conquer.bench import ipc_probe, redis_floor, registry
from conquer.bench.context import Context
from conquer.bench.points import Point, Series, run_cases, timed
from conquer.bench.profiles import Profile
from conquer.bench.reporter import Reporter
from conquer.rounds import Deployments
from tasks import Job

FLOOR_COMMANDS = (("PING", ("-t", "ping_mbulk")), ("LPUSH", ()), ("RPOP", ()))


def measure(context: Context) -> Series:
    profile, reporter = context.profile, context.reporter
    method = workers.default_start_method()
    series = Series(
        "round-trip",
        "Round trips",
        f"One message out and its answer back. In-host: a chunk to a live worker and its result back "
        f"(mean of {profile.round_trips} per sample, start method {method}). Redis floor: "
        f"redis-benchmark -c 1 ({profile.redis_requests} requests per sample) against a private "
        "redis-server. Celery: a whole one-chunk job (chunk task + combine task + results).",
        parameters={
            "round_trips": profile.round_trips,
            "redis_requests": profile.redis_requests,
            "start_method": method,
        },
    )
    celery = registry.present(series, (registry.CELERY,))
    floor_binary, server = redis_floor.benchmark_binary(), redis_floor.server_binary()
    floor_runs = 2 * len(FLOOR_COMMANDS) if floor_binary and server else 0
    redis_py = importlib.util.find_spec("redis") is not None and server is not None
    runs = len(ipc_probe.ECHOES) + floor_runs + int(redis_py) + len(celery)
    reporter.begin(series, runs * profile.repeats)
    with timed(series):
        for mechanism in ipc_probe.ECHOES:
            series.points.append(in_host(mechanism, method, profile, context.deployments))
            for _ in range(profile.repeats):
                reporter.tick()
        if floor_runs and floor_binary and server:
            series.points += floor(floor_binary, server, profile, reporter, context.deployments)
        else:
            series.skip(
                "redis-benchmark",
                "no redis-benchmark and redis-server on PATH (Debian: apt-get install redis-tools "
                "redis-server), so the Redis floor is not measured",
            )
        for name in celery:
            job = Job("sum", 1, 1)
            (point,) = run_cases([(job, workers.plan("sum", name, 1))], context)
            point.label = f"{name}: one-chunk job"
            series.points.append(point)
    for point in series.points:
        median = point.median
        point.derived = {**point.derived, "per_second": 1 / median if median else None}
    return series


def in_host(mechanism: str, method: str, profile: Profile, deployments: Deployments) -> Point:
    """Its samples come in one batch (one worker answers them all): one meter covers the batch."""
    point = Point(
        f"{mechanism} round trip",
        {"mechanism": mechanism, "start_method": method, "count": profile.round_trips},
        "round_trip_s",
        "s",
    )
    meter = deployments.meter()
    began = time.perf_counter()
    try:
        point.samples = ipc_probe.measure(mechanism, method, profile.round_trips, profile.repeats)
    except (ipc_probe.ProbeError, OSError, EOFError) as error:
        point.error = f"{type(error).__name__}: {error}"
        return point
    point.runs.append(meter.stop(time.perf_counter() - began))
    return point


def floor(
    binary: str, server: str, profile: Profile, reporter: Reporter, deployments: Deployments
) -> list[Point]:
    """redis-benchmark's PING, LPUSH and RPOP on each transport, plus redis-py's PING."""
    points: dict[tuple[str, str], Point] = {}
    try:
        with redis_floor.private_redis(server) as endpoints:
            for endpoint in endpoints:
                for name, _ in FLOOR_COMMANDS:
                    points[endpoint.transport, name] = Point(
                        f"redis-benchmark {name} ({endpoint.transport})",
                        {"tool": "redis-benchmark", "command": name, "transport": endpoint.transport},
                        "round_trip_s",
                        "s",
                    )
            for _ in range(profile.repeats):
                for endpoint in endpoints:
                    floor_round(binary, endpoint, profile.redis_requests, points, reporter, deployments)
            if importlib.util.find_spec("redis") is not None:
                points["unix socket", "redis-py"] = python_ping(endpoints[0], profile, deployments)
                for _ in range(profile.repeats):
                    reporter.tick()
    except (redis_floor.FloorError, OSError) as error:
        failed = Point("redis floor", {"tool": "redis-benchmark"}, "round_trip_s", "s")
        failed.error = f"{type(error).__name__}: {error}"
        return [*points.values(), failed]
    for point in points.values():
        p50 = point.derived.pop("p50_samples_s", None)
        if p50:
            point.derived["p50_s"] = statistics.median(p50)
    return list(points.values())


def floor_round(
    binary: str,
    endpoint: redis_floor.Endpoint,
    requests: int,
    points: dict[tuple[str, str], Point],
    reporter: Reporter,
    deployments: Deployments,
) -> None:
    """One sample of each floor command on `endpoint`; LPUSH and RPOP checked by the key's length."""
    key = redis_floor.run_key()
    for name, test in FLOOR_COMMANDS:
        point = points[endpoint.transport, name]
        reporter.tick()
        if point.error:
            continue
        words: tuple[str, ...] = test or (name, key, *(("x",) if name == "LPUSH" else ()))
        meter = deployments.meter()
        try:
            measured = redis_floor.benchmark(binary, endpoint, requests, *words)
            run = meter.stop(measured.round_trip_s * requests)
            expected_length = {"LPUSH": requests, "RPOP": 0}.get(name)
            if expected_length is not None:
                length = redis_floor.integer(endpoint, "LLEN", key)
                if length != expected_length:
                    point.verified = False
                    point.error = f"wrong answer: after {requests} {name}s the list holds {length}"
                    continue
        except (redis_floor.FloorError, OSError, ValueError) as error:
            point.error = f"{type(error).__name__}: {error}"
            continue
        point.samples.append(measured.round_trip_s)
        point.runs.append(run)
        point.derived.setdefault("p50_samples_s", []).append(measured.p50_s)


def python_ping(endpoint: redis_floor.Endpoint, profile: Profile, deployments: Deployments) -> Point:
    """Round trips of redis-py's PING over the Unix socket: the Python client's own cost."""
    redis: Any = importlib.import_module("redis")
    point = Point(
        "redis-py PING (unix socket)",
        {"tool": "redis-py", "command": "PING", "transport": endpoint.transport},
        "round_trip_s",
        "s",
    )
    client: Any = redis.Redis(unix_socket_path=endpoint.socket_path, socket_timeout=5)
    try:
        client.ping()
        for _ in range(profile.repeats):
            meter = deployments.meter()
            began = time.perf_counter()
            answers = [client.ping() for _ in range(profile.round_trips)]
            elapsed = time.perf_counter() - began
            if not all(answers):
                point.verified = False
                point.error = "wrong answer: a PING did not get PONG"
                break
            point.samples.append(elapsed / profile.round_trips)
            point.runs.append(meter.stop(elapsed))
    except redis.RedisError as error:
        point.error = f"{type(error).__name__}: {error}"
    finally:
        client.close()
    return point
