"""A compose project of its own on a real Docker-compatible engine, driven the way a reader drives the
README: `docker compose ...` from the checkout. Used by `tests/compose/compose_up.py`.

The project gets its name, its env file (none, or one of the test's) and its Flower port from the
environment — COMPOSE_PROJECT_NAME, COMPOSE_ENV_FILES, FLOWER_PORT — never from extra flags, so the
README's commands run here word for word and touch no other stack on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.compose.composefile import COMPOSE_VARIABLES, ROOT
from tests.flower import flower_get

#: How long one command may take. The slowest measured here is `up --build` with a cold cache
#: (dependencies from PyPI): 2 to 3 minutes on 2 loaded cores, so 8 minutes is generous. (`up --wait`
#: waits for ever on a service that keeps restarting, never "unhealthy": `run` stops on that at once.)
DEADLINE_S = 480
#: Through the Docker API, podman 4.3 (compose-lab) now and then loses the whole output of a short
#: `run --rm` container that exits 0: 6 of 30 `run --rm secrets show` and 1 of 20 `docker run --rm ...
#: echo` came back empty at load 7-10 on 2 cores, 0 of 20 with podman's own CLI (compose-lab's
#: healthcheck loop calls the API meanwhile, which is enough: see `run`). `read` asks again
#: on exactly that symptom (exit 0, nothing on stdout), at most this many times in all: at 20% a
#: loss, five in a row is 3 in 10,000. Each re-ask is counted and printed, never hidden.
READ_ATTEMPTS = 5
#: How often a running command's containers are looked at for a crash loop, which ends it at once.
LOOK_S = 5

#: COMPOSE_ENV_FILES, which keeps a developer's own `.env` out of the run, came with Compose 2.24.
COMPOSE_MIN = (2, 24)


class Skip(Exception):
    """No engine to run containers on: not a failure of the project."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require_engine() -> None:
    """Return if `docker compose` can run containers here; raise Skip saying why not otherwise."""
    if shutil.which("docker") is None:
        raise Skip("no `docker` command on PATH")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise Skip(f"no Docker-compatible engine answers `docker info` ({reason})")
    version = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30, check=False
    )
    found = re.match(r"v?(\d+)\.(\d+)", version.stdout.strip())
    if version.returncode != 0 or found is None:
        raise Skip("`docker compose` (Compose v2) is not installed")
    if (int(found[1]), int(found[2])) < COMPOSE_MIN:
        raise Skip(f"Compose {version.stdout.strip()} is older than {'.'.join(map(str, COMPOSE_MIN))}")


def docker(*arguments: str) -> str:
    """A plain `docker` command's stdout."""
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(arguments)} exited with {result.returncode}: {result.stderr}")
    return result.stdout


def docker_exec(container: str, command: str) -> str:
    """What `sh -c COMMAND` printed on stdout inside `container`, whatever its exit status."""
    result = subprocess.run(
        ["docker", "exec", container, "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout


class Stack:
    def __init__(self) -> None:
        self.project = f"conquer-compose-test-{os.getpid()}"
        self.flower_port = free_port()
        # No compose variable and no COMPOSE_* setting of the developer's reaches the run.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in COMPOSE_VARIABLES and not key.startswith("COMPOSE_")
        }
        self.env.update(
            COMPOSE_PROJECT_NAME=self.project, COMPOSE_ENV_FILES=os.devnull, FLOWER_PORT=str(self.flower_port)
        )
        self.timings: dict[str, float] = {}
        self.outputs_lost = 0

    def use_env_file(self, path: Path | None) -> None:
        """What the next commands read as `.env` (None: nothing)."""
        self.env["COMPOSE_ENV_FILES"] = str(path) if path else os.devnull

    def run(
        self, command: str, timeout: float = DEADLINE_S, capture: bool = False, check: bool = True
    ) -> str:
        """`command` as a shell would run it from the checkout; its stdout when `capture`."""
        process = subprocess.Popen(
            shlex.split(command),
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    stdout, _ = process.communicate(timeout=LOOK_S)
                    break
                except subprocess.TimeoutExpired:
                    # Not while an attached `run` streams its output: any API call meanwhile makes
                    # podman 4.3 drop that output (3 of 3 `run --rm cli conquer submit` came back
                    # empty with a `ps` every 5 s, 0 of 3 without). Only `up`/`down` are watched.
                    looping = [] if capture else self.crash_looping()
                    if looping or time.monotonic() > deadline:
                        why = (
                            f"{', '.join(looping)} keeps restarting"
                            if looping
                            else f"no end in {timeout:g} s"
                        )
                        raise RuntimeError(f"`{command}` stopped: {why}") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout)
        if check and result.returncode != 0:
            raise RuntimeError(f"`{command}` exited with {result.returncode}")
        return result.stdout or ""

    def read(self, command: str) -> str:
        """The stdout of `command` (idempotent: it only shows or computes), asked again when the
        engine lost it (see READ_ATTEMPTS)."""
        for _ in range(READ_ATTEMPTS):
            output = self.run(command, capture=True)
            if output.strip():
                return output
            self.outputs_lost += 1
            print(f"    `{command}` exited 0 with no output: lost by the engine, asking again", flush=True)
        raise AssertionError(f"`{command}` printed nothing {READ_ATTEMPTS} times in a row")

    def compose(self, *arguments: str, timeout: float = 120, check: bool = True) -> str:
        """`docker compose ARGUMENTS`' stdout (for the test's own looks: top, ps, logs, exec...)."""
        result = subprocess.run(
            ["docker", "compose", *arguments],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker compose {shlex.join(arguments)}: {result.stderr.strip()}")
        return result.stdout

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"--> {name}", flush=True)
        began = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - began
        print(f"    {self.timings[name]:.1f} s", flush=True)

    def flower(self, path: str, auth: tuple[str, str] | None) -> tuple[int, bytes]:
        return flower_get(f"http://127.0.0.1:{self.flower_port}{path}", auth)

    def wait_for_workers(
        self, count: int, auth: tuple[str, str], within: float, dashboard: bool = False
    ) -> list[str]:
        """The worker names Flower lists, once there are `count` of them: its API (which asks the
        workers), or its dashboard (built from their events, offline workers purged)."""
        deadline = time.monotonic() + within
        while True:
            if dashboard:
                status, body = self.flower("/workers?json=1", auth)
                names = sorted(row["hostname"] for row in json.loads(body)["data"]) if status == 200 else []
            else:
                status, body = self.flower("/api/workers?refresh=1", auth)
                names = sorted(json.loads(body)) if status == 200 else []
            if len(names) == count:
                return names
            if time.monotonic() > deadline:
                raise AssertionError(f"Flower lists {names} (HTTP {status}), expected {count} workers")
            time.sleep(1)

    def crash_looping(self) -> list[str]:
        """Containers of the project that crashed and were restarted more than once."""
        ids = self.compose("ps", "--all", "--quiet", check=False).split()
        # Not `docker()`: a `run --rm` container may be gone by the time it is inspected.
        listing = subprocess.run(
            ["docker", "inspect", "--format", "{{.Name}} {{.RestartCount}}", *ids],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        rows = [line.split() for line in listing.stdout.splitlines()] if ids else []
        return [name.lstrip("/") for name, count in rows if int(count) > 1]

    def containers(self, service: str = "") -> list[str]:
        """Ids of the project's containers (of `service`), running or not."""
        return self.compose("ps", "--all", "--quiet", *([service] if service else [])).split()

    def started_at(self, container: str) -> str:
        return docker("inspect", "--format", "{{.State.StartedAt}}", container).strip()

    def diagnose(self) -> None:
        """What a failed run needs to be understood: each container's state and its last log lines."""
        print(self.compose("ps", "--all", check=False))
        print(self.compose("logs", "--no-color", "--tail", "15", check=False))

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
