"""A real `docker compose up` of the whole stack, from a clean state to nothing left.

Builds the image, starts Redis, a worker and Flower and waits until every healthcheck passes; scales to
three workers; runs a job through the `cli` service and checks its answer exactly; checks that the
containers run as a non-root user and that Redis refuses clients without the password; asks Flower's
API (with credentials, and without: 401) for the workers; scales down to one worker and waits for
Flower to forget the other two; then `docker compose down -v` and checks that no container, volume or
network of the project is left. Prints how long each step took.

It needs a Docker-compatible engine (`docker info` must answer, e.g. through DOCKER_HOST) and says
why it skips otherwise. It uses its own project name, random passwords and a free Flower port, so it
touches no other stack on the machine.

Usage::

    make compose-test
    python -m tests.compose.compose_up            # the same, from the checkout with the virtualenv active
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
from contextlib import contextmanager
from pathlib import Path

from tests.flower import flower_get

ROOT = Path(__file__).resolve().parents[2]
N = 100_000_000
WORKERS = 3


class Skip(Exception):
    """No engine to run containers on: not a failure of the project."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        raise Skip("no `docker` command on PATH")
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise Skip(f"no Docker-compatible engine answers `docker info` ({reason})")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if version.returncode != 0:
        raise Skip("`docker compose` (Compose v2) is not installed")
    return [docker, "compose"]


def docker(*arguments: str) -> str:
    """A plain `docker` command's stdout (its stderr is the container's, for `docker logs`)."""
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(arguments)} exited with {result.returncode}: {result.stderr}")
    return result.stdout


class Stack:
    def __init__(self, compose: list[str]) -> None:
        self.project = f"conquer-compose-test-{os.getpid()}"
        self.flower_port = free_port()
        self.flower_user = "tester"
        self.flower_password = secrets.token_urlsafe(16)
        self.env = {
            **os.environ,
            "REDIS_PASSWORD": secrets.token_urlsafe(24),
            "FLOWER_USER": self.flower_user,
            "FLOWER_PASSWORD": self.flower_password,
            "FLOWER_PORT": str(self.flower_port),
        }
        self.compose = [
            *compose,
            "--project-name",
            self.project,
            "--project-directory",
            str(ROOT),
            "--file",
            str(ROOT / "compose.yaml"),
            "--env-file",
            os.devnull,
        ]
        self.timings: dict[str, float] = {}

    def __call__(
        self, *arguments: str, timeout: float = 600, capture: bool = False, check: bool = True
    ) -> str:
        result = subprocess.run(
            [*self.compose, *arguments],
            env=self.env,
            text=True,
            timeout=timeout,
            check=False,
            stdout=subprocess.PIPE if capture else None,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(arguments)} exited with {result.returncode}")
        return result.stdout or ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"--> {name}", flush=True)
        began = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - began
        print(f"    {self.timings[name]:.1f} s", flush=True)

    def flower(self, path: str, authenticated: bool = True) -> tuple[int, bytes]:
        auth = (self.flower_user, self.flower_password) if authenticated else None
        return flower_get(f"http://127.0.0.1:{self.flower_port}{path}", auth)

    def wait_for_workers(self, count: int, within: float, dashboard: bool = False) -> list[str]:
        """The worker names Flower lists, once there are `count` of them: its API (which asks the
        workers), or its dashboard (built from their events, offline workers purged)."""
        deadline = time.monotonic() + within
        while True:
            if dashboard:
                status, body = self.flower("/workers?json=1")
                names = sorted(row["hostname"] for row in json.loads(body)["data"]) if status == 200 else []
            else:
                status, body = self.flower("/api/workers?refresh=1")
                names = sorted(json.loads(body)) if status == 200 else []
            if len(names) == count:
                return names
            if time.monotonic() > deadline:
                raise AssertionError(f"Flower lists {names} (HTTP {status}), expected {count} workers")
            time.sleep(1)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in ("container", "volume", "network"):
            listing = ["docker", kind, "ls", "--quiet", "--filter", label]
            if kind == "container":
                listing.insert(3, "--all")
            output = subprocess.run(listing, capture_output=True, text=True, timeout=60, check=True).stdout
            found += [f"{kind} {name}" for name in output.split()]
        return found


def check(stack: Stack) -> None:
    with stack.step("docker compose up -d --build --wait"):
        stack("up", "--detach", "--build", "--wait", "--wait-timeout", "300")
    with stack.step(f"docker compose up -d --scale worker={WORKERS} --wait"):
        stack("up", "--detach", "--scale", f"worker={WORKERS}", "--wait", "--wait-timeout", "300")
    with stack.step(f"docker compose run cli conquer submit sum {N} --wait --json"):
        # The answer is read back from the container's log, not from the attached output stream:
        # some engines (podman 4) now and then cut that stream short when the container exits.
        name = f"{stack.project}-cli"
        try:
            stack(
                "run",
                "--name",
                name,
                "cli",
                "conquer",
                "submit",
                "sum",
                str(N),
                "--wait",
                "--json",
                capture=True,
            )
            output = docker("logs", name)
        finally:
            docker("rm", "--force", name)
        report = json.loads(output)
        expected = N * (N + 1) // 2
        assert report["value"] == expected, f"answer {report['value']} != n(n+1)/2 = {expected}"
        assert report["verified"] is True
        print(f"    answer {report['value']} = n(n+1)/2, verified")
    with stack.step("security: non-root containers, a Redis that refuses strangers"):
        # `top` asks the engine's API for every container's processes (SERVICE # USER PID ...).
        rows = [line.split() for line in stack("top", capture=True).splitlines()[1:] if line.strip()]
        users = {(row[0], row[2]) for row in rows}
        assert {service for service, _ in users} >= {"redis", "worker", "flower"}, users
        assert not [service for service, user in users if user in ("root", "0")], f"root in {users}"
        print("    " + ", ".join(f"{service} runs as {user}" for service, user in sorted(users)))
        for _ in range(5):  # an empty answer is the attached stream cut short (see above): ask again
            answer = stack("exec", "-T", "redis", "redis-cli", "ping", capture=True, check=False)
            if answer.strip():
                break
        assert "NOAUTH" in answer, f"redis answered {answer!r} without the password"
        print("    redis without the password: NOAUTH")
    with stack.step("Flower: 401 without credentials, the workers with them"):
        status, _ = stack.flower("/api/workers", authenticated=False)
        assert status == 401, f"Flower answered {status} without credentials"
        names = stack.wait_for_workers(WORKERS, within=60)
        print(f"    workers: {', '.join(names)}")
    with stack.step("docker compose up -d --scale worker=1: Flower forgets the removed workers"):
        stack("up", "--detach", "--scale", "worker=1", "--wait", "--wait-timeout", "300")
        # The dashboard drops a worker --purge_offline_workers=60 s (compose.yaml) after its last
        # heartbeat. (The API's /api/workers is a cache of replies that keeps old names.)
        names = stack.wait_for_workers(1, within=120, dashboard=True)
        print(f"    workers: {', '.join(names)}")


def main() -> int:
    try:
        stack = Stack(docker_compose())
    except Skip as reason:
        print(f"compose-test skipped: {reason}.")
        return 0
    failure: BaseException | None = None
    try:
        check(stack)
    except BaseException as error:  # report it after cleaning up, whatever it was
        failure = error
    finally:
        with stack.step("docker compose down -v"):
            stack("--profile", "cli", "down", "--volumes", "--remove-orphans", "--timeout", "30")
        left = stack.leftovers()
    if left:
        print(f"left behind: {', '.join(left)}")
    print("timings: " + ", ".join(f"{name}: {seconds:.1f} s" for name, seconds in stack.timings.items()))
    if failure is not None:
        print(f"compose-test FAILED: {failure}")
        return 1
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
