"""The celery executor against real worker processes and a real Redis: exact answers for every kind,
who ran each chunk, failures naming the range, no key left without a TTL, and an embedded stack that
leaves nothing running — after success, Ctrl-C, or even a SIGKILLed `conquer`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from conquer.exitcodes import ExitCode
from conquer.usage import deployed_processes
from tasks import Job, check
from tests.conftest import CONQUER, Stack, ctrl_c, keys_by_ttl, wait_until
from workers import ChunkError, ChunkResult, Deployed
from workers.celery.chord import Deployment, deploy, run
from workers.celery.settings import Settings

JOBS = {
    "sum": Job("sum", 1_000_003, 16),
    "primes": Job("primes", 50_021, 7),
    "download": Job("download", 40, 8, latency=0.002),
}


def on_session_stack(stack: Stack) -> Deployment:
    return Deployment(stack.client, None, 0.0)


@pytest.mark.parametrize("kind", JOBS)
def test_each_kind_gets_the_exact_answer_through_the_chord(broker_stack: Stack, kind: str) -> None:
    job = JOBS[kind]
    seen: list[ChunkResult] = []
    report = run(job, workers=2, progress=seen.append, deployment=on_session_stack(broker_stack))
    assert report.value == check(job)
    assert report.verified
    assert [chunk.index for chunk in report.chunks] == list(range(job.chunks))
    assert sorted(chunk.index for chunk in seen) == list(range(job.chunks))
    # Every chunk ran in a pool process of one of the stack's workers, never here.
    assert {chunk.host for chunk in report.chunks} <= set(broker_stack.stack.worker_names)
    assert os.getpid() not in {chunk.pid for chunk in report.chunks}
    assert report.details["broker"] == "external"


def test_a_raising_chunk_fails_the_job_naming_its_range(broker_stack: Stack) -> None:
    job = Job("sum", 1000, 4, fail_at=600)
    with pytest.raises(
        ChunkError, match=r"^chunk 2 \[501, 751\) failed: InjectedFault: injected fault at item 600$"
    ):
        run(job, workers=2, deployment=on_session_stack(broker_stack))


def test_after_a_job_every_key_it_made_expires(celery_stack: Stack) -> None:
    run(Job("sum", 10_000, 8), workers=2, deployment=on_session_stack(celery_stack))
    expiring, forever = keys_by_ttl(celery_stack.redis, celery_stack.stack.app)
    assert any(":conquer:job:" in key for key in expiring)
    assert forever == []


#: Keys no job makes, each named to slip past a looser check: the project's own namespace, which
#: starts like kombu's queue `conquer`; names that start like kombu's structures; the binding table of
#: an exchange the app does not use.
LOOK_ALIKES = (
    "conquer:job:0123456789abcdef",
    "conquer:job:0123456789abcdef:done",
    "conquerx",
    "unacked_index:x",
    "_kombu.binding.conquer.extra",
    "_kombu.binding.nobody",
)


def test_a_key_without_a_ttl_is_caught_even_where_kombu_keeps_its_own(celery_stack: Stack) -> None:
    """The check above can fail: a key without a TTL planted beside the stack's is reported, however
    much its name looks like one of kombu's structures — while those themselves are not."""
    prefix = celery_stack.prefix
    run(Job("sum", 1_000, 4), workers=2, deployment=on_session_stack(celery_stack))
    planted = [f"{prefix}{name}" for name in LOOK_ALIKES]
    try:
        for key in planted:
            celery_stack.redis.set(key, "no TTL")
        _, forever = keys_by_ttl(celery_stack.redis, celery_stack.stack.app)
    finally:
        celery_stack.redis.delete(*planted)
    assert sorted(forever) == sorted(planted)
    # kombu's own are there, without a TTL, and exempt by their exact names.
    kept = {f"{prefix}_kombu.binding.conquer", f"{prefix}_kombu.binding_deadlines"}
    assert all(celery_stack.redis.ttl(key) == -1 for key in kept)


def test_an_unreachable_configured_broker_exits_3_naming_the_url_without_its_password() -> None:
    result = subprocess.run(
        [CONQUER, "run", "sum", "1000", "--on", "celery"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CELERY_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"},
        check=False,
    )
    assert result.returncode == ExitCode.BROKER_UNREACHABLE
    assert result.stderr.count("\n") == 1
    assert "redis://:***@127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stderr


# ------------------------------------------------------------------------- the embedded stack


def embedded(*args: str) -> subprocess.Popen[str]:
    """`conquer ARGS` with no broker configured (so it starts its own), in its own session."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "CONQUER_"))}
    return subprocess.Popen(
        [CONQUER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def stack_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The Redis server and celery workers (with their pool processes) under `parent`."""
    found = []
    for child in parent.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "redis-server" in command or "celery" in command:
            found.append(child)
    return found


def wait_for_stack(process: subprocess.Popen[str]) -> list[psutil.Process]:
    parent = psutil.Process(process.pid)
    seen: dict[int, psutil.Process] = {}

    def workers_busy() -> bool:
        for child in stack_processes(parent):
            seen[child.pid] = child
        return any("redis-server" in " ".join(c.cmdline()) for c in seen.values()) and len(seen) >= 3

    wait_until(workers_busy, 60, "the embedded stack never started")
    return list(seen.values())


def assert_all_gone(processes: list[psutil.Process], timeout: float = 15) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left running: {[' '.join(p.cmdline()) for p in alive]}"


@pytest.mark.usefixtures("embedded_redis")
def test_the_embedded_stack_runs_a_job_and_leaves_nothing_running() -> None:
    process = embedded(
        "run", "download", "60", "--chunks", "12", "--latency", "0.05", "--on", "celery", "--json"
    )
    started = wait_for_stack(process)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == ExitCode.OK, stderr
    assert '"broker": "embedded"' in stdout
    assert '"verified": true' in stdout
    assert_all_gone(started)


@pytest.mark.usefixtures("embedded_redis")
def test_ctrl_c_stops_the_embedded_stack_and_exits_130() -> None:
    process = embedded("run", "download", "400", "--chunks", "40", "--latency", "0.05", "--on", "celery")
    started = wait_for_stack(process)
    _, stderr = ctrl_c(process, timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED
    assert stderr.strip() == "conquer: interrupted"
    assert_all_gone(started)


@pytest.mark.usefixtures("embedded_redis")
def test_a_sigkilled_conquer_takes_its_embedded_stack_with_it() -> None:
    process = embedded("run", "download", "400", "--chunks", "40", "--latency", "0.05", "--on", "celery")
    started = wait_for_stack(process)
    directories = {
        Path(match).parent
        for child in started
        for match in re.findall(r"/\S*/conquer-\w+/redis\.sock", " ".join(child.cmdline()))
    }
    process.kill()
    process.communicate(timeout=30)
    assert_all_gone(started, timeout=30)
    # Nobody was left to remove the stack's directory (its logs): the test does.
    assert len(directories) == 1
    for directory in directories:
        shutil.rmtree(directory)


def test_the_meter_counts_a_run_over_every_process_of_an_embedded_deployment() -> None:
    """`conquer.usage` finds the processes a deployment started by name (`stack.processes`): the
    embedded broker and each worker, so that a run's CPU time is counted over them, not guessed."""
    with deploy(workers=1, base=Settings()) as deployment:
        stack = deployment.stack
        assert stack is not None
        found = deployed_processes(Deployed({"deployment": deployment}, deployment.facts()))
        assert stack.broker is not None
        assert found == [process.pid for process in stack.processes]
        assert set(found) == {stack.broker.pid, *(worker.pid for worker in stack.workers)}
