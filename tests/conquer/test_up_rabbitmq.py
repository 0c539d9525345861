"""`conquer up` and `conquer compare --executors celery` with RabbitMQ as the broker (issue 12): `up`
starts only the workers and Flower, against a private RabbitMQ node (its Redis result backend beside
it), says which broker it found without printing its password, and Ctrl-C stops all it started."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psutil
import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import conquer, ctrl_c, wait_until
from tests.conquer.test_stack_cli import clean_env, read_until, start
from tests.flower import flower_get
from tests.rabbitmq_server import RabbitMQStack, drill_broker, queue_depth
from workers.celery.localstack import free_port
from workers.celery.settings import mask


def flower_lists(url: str, auth: tuple[str, str]) -> set[str]:
    """The workers Flower at `url` lists after asking them afresh (its inspect waits 1 s, so a busy
    worker may be missing from one answer: poll this)."""
    status, body = flower_get(f"{url}/api/workers?refresh=1", auth)
    assert status == 200, status
    return set(json.loads(body))


@pytest.mark.timeout(240)
def test_up_on_rabbitmq_starts_workers_and_flower_against_it_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    with drill_broker(tmp_path, kept=False) as broker:
        node, backend = broker.node, broker.backend
        password = node.url.partition("@")[0].rpartition(":")[2]
        env = clean_env(
            CELERY_BROKER_URL=node.url,
            CELERY_RESULT_BACKEND=backend.url,
            CONQUER_WORKER_CONCURRENCY="1",
        )
        process = start("up", "--workers", "2", "--flower-port", str(free_port()), env=env)
        started: list[psutil.Process] = []
        try:
            banner = read_until(process, "Press Ctrl-C", 120)
            started = psutil.Process(process.pid).children(recursive=True)
            assert password not in banner
            assert f"broker   external RabbitMQ, {mask(node.url)}" in banner, banner
            assert f"results  Redis, {mask(backend.url)}" in banner, banner
            named = re.findall(r"^ +(conquer\d-\S+@\S+)$", banner, re.M)
            assert len(named) == 2, banner
            listed = conquer("workers", "--json", "--timeout", "3", env=env)
            assert listed.returncode == ExitCode.OK, listed.stderr
            assert sorted(worker["name"] for worker in json.loads(listed.stdout)) == named
            job = conquer("submit", "primes", "30000", "--chunks", "6", "--wait", "--json", env=env)
            assert job.returncode == ExitCode.OK, job.stderr
            report = json.loads(job.stdout)
            assert report["value"] == check(Job("primes", 30000, 6))
            assert {chunk["host"] for chunk in report["chunk_results"]} <= set(named)
            flower = re.search(r"flower\s+(http://127\.0\.0\.1:\d+)\s+user (\S+)\s+password (\S+)", banner)
            assert flower, banner
            url, user, flower_password = flower.groups()
            assert flower_get(f"{url}/api/workers")[0] == 401
            wait_until(
                lambda: flower_lists(url, (user, flower_password)) == set(named),
                30,
                "Flower never listed them",
            )
        finally:
            _, stderr = ctrl_c(process, timeout=60)
        assert process.returncode == ExitCode.OK, stderr
        assert b"stopped" in stderr
        _, alive = psutil.wait_procs(started, timeout=15)
        assert not alive
        assert queue_depth(node) == 0


def test_compare_runs_celery_through_the_configured_rabbitmq(rabbitmq_stack: RabbitMQStack) -> None:
    result = conquer(
        "compare",
        "sum",
        "1e5",
        "--executors",
        "celery",
        "--repeats",
        "2",
        "--json",
        env=rabbitmq_stack.stack.env,
        timeout=120,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    _serial, celery = json.loads(result.stdout)["results"]
    assert celery["executor"] == "celery"
    assert celery["error"] is None, celery["error"]
    assert celery["verified"] is True  # every run's answer matched the independent check
    assert len(celery["runs"]) == 2
    assert "external broker" in celery["cpu_s_note"]
    url = rabbitmq_stack.stack.stack.settings.broker_url
    assert celery["deployment"] == {"broker": "external", "broker_name": "RabbitMQ", "broker_url": mask(url)}
    assert url.partition("@")[0].rpartition(":")[2] not in result.stdout + result.stderr  # its password
