"""A real `docker compose up` of the whole stack, from a clean state to nothing left.

Builds the image, starts Redis, a worker and Flower and waits until every healthcheck passes; scales to
three workers; runs a job through the `cli` service and checks its answer exactly; asks Flower's API
(with credentials, and without: 401) for the workers; then `docker compose down -v` and checks that no
container, volume or network of the project is left. Prints how long each step took.

It needs a Docker-compatible engine (`docker info` must answer, e.g. through DOCKER_HOST) and says
why it skips otherwise. It uses its own project name, random passwords and a free Flower port, so it
touches no other stack on the machine.

Usage::

    make compose-test
    python tests/compose/compose_up.py            # the same, from an activated virtualenv
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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

    def __call__(self, *arguments: str, timeout: float = 600, capture: bool = False) -> str:
        result = subprocess.run(
            [*self.compose, *arguments],
            env=self.env,
            text=True,
            timeout=timeout,
            check=False,
            stdout=subprocess.PIPE if capture else None,
        )
        if result.returncode != 0:
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
        request = urllib.request.Request(f"http://127.0.0.1:{self.flower_port}{path}")
        if authenticated:
            token = base64.b64encode(f"{self.flower_user}:{self.flower_password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

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
    with stack.step(f"docker compose run --rm cli conquer submit sum {N} --wait --json"):
        output = stack(
            "run", "--rm", "cli", "conquer", "submit", "sum", str(N), "--wait", "--json", capture=True
        )
        report = json.loads(output)
        expected = N * (N + 1) // 2
        assert report["value"] == expected, f"answer {report['value']} != n(n+1)/2 = {expected}"
        assert report["verified"] is True
        print(f"    answer {report['value']} = n(n+1)/2, verified")
    with stack.step("Flower: 401 without credentials, the workers with them"):
        status, _ = stack.flower("/api/workers", authenticated=False)
        assert status == 401, f"Flower answered {status} without credentials"
        deadline = time.monotonic() + 60
        while True:
            status, body = stack.flower("/api/workers?refresh=1")
            names = sorted(json.loads(body)) if status == 200 else []
            if len(names) == WORKERS:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"Flower lists {names} (HTTP {status}), expected {WORKERS} workers")
            time.sleep(1)
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
