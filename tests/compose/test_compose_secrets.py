"""The stack's secrets without a `.env`: the `secrets` service's script, taken from `docker compose
config` and run by `sh` here against a directory that stands in for its volume (no engine needed), and
the `CELERY_BROKER_URL_FILE` setting through which every Celery process reads what it wrote.

`make compose-test` checks the same story in real containers (non-root writer, 401/200 from Flower).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compose.composefile import rendered, settle_secrets
from tests.conftest import conquer, one_line
from workers.celery.settings import (
    ENV_BACKEND,
    ENV_BACKEND_FILE,
    ENV_BROKER,
    ENV_BROKER_FILE,
    Settings,
    SettingsError,
)

SECRETS = ("redis-password", "flower-user", "flower-password", "rabbitmq-password")
#: The URLs stored from them, which the Celery processes read.
URLS = ("redis-url", "rabbitmq-url")
#: What a user may set in `.env` instead of a generated value.
GIVEN = ("REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD", "RABBITMQ_PASSWORD")
#: The password every clone of this project used to fall back to.
WELL_KNOWN = "conquer-local-only"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return rendered()


def settle(
    config: dict[str, Any], directory: Path, *arguments: str, **given: str
) -> tuple[dict[str, str], str, str]:
    """Run the script as `docker compose up` would with `given` in `.env`; return what it stored, its
    stdout and its stderr. Compose passes an unset variable as an empty one (`${VAR:-}`)."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        **{name: given.get(name, "") for name in GIVEN},
    }
    result = settle_secrets(config, directory, *arguments, env=env)
    assert result.returncode == 0, result.stderr
    stored = {path.name: path.read_text() for path in directory.iterdir()}
    return stored, result.stdout, result.stderr


def test_a_first_start_generates_passwords_nobody_else_knows(config: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, _, _ = settle(config, tmp_path / "one")
    second, _, _ = settle(config, tmp_path / "two")
    assert sorted(first) == sorted([*SECRETS, *URLS])  # nothing else, no half-written `.new`
    assert first["flower-user"] == "admin\n"
    for name in ("redis-password", "flower-password", "rabbitmq-password"):
        # secrets.token_urlsafe(24): 24 random bytes, 32 URL-safe characters.
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}\n", first[name]), name
        assert first[name] != second[name], f"two stacks got the same {name}"
        assert WELL_KNOWN not in first[name]
    assert len({first["redis-password"], first["flower-password"], first["rabbitmq-password"]}) == 3
    assert first["redis-url"] == f"redis://:{first['redis-password'].strip()}@redis:6379/0\n"
    # The default vhost, `/`, is the URL's path: `//`.
    assert first["rabbitmq-url"] == f"amqp://conquer:{first['rabbitmq-password'].strip()}@rabbitmq:5672//\n"


def test_only_owner_and_group_may_read_them(config: dict[str, Any], tmp_path: Path) -> None:
    """0440: the conquer user and its group (which Redis joins); the directory's 0750 comes from the
    Dockerfile through the volume."""
    settle(config, tmp_path)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o440, path.name


def test_the_log_says_what_happened_and_never_a_value(config: dict[str, Any], tmp_path: Path) -> None:
    stored, out, err = settle(config, tmp_path)
    assert out == ""
    assert err.splitlines() == [f"secrets: {name} new" for name in SECRETS]
    _, out, err = settle(config, tmp_path, FLOWER_PASSWORD="from-dot-env")
    assert err.splitlines() == [
        "secrets: redis-password kept",
        "secrets: flower-user kept",
        "secrets: flower-password from the environment (.env)",
        "secrets: rabbitmq-password kept",
    ]
    for value in stored.values():
        assert value.strip() not in out + err


def test_a_restart_keeps_them(config: dict[str, Any], tmp_path: Path) -> None:
    first, _, _ = settle(config, tmp_path)
    again, _, err = settle(config, tmp_path)
    assert again == first
    assert err.splitlines() == [f"secrets: {name} kept" for name in SECRETS]


def test_values_set_in_env_win_and_stay(config: dict[str, Any], tmp_path: Path) -> None:
    generated, _, _ = settle(config, tmp_path)
    mine = {
        "REDIS_PASSWORD": "my-redis.pw",
        "FLOWER_USER": "me",
        "FLOWER_PASSWORD": "my~flower_pw",
        "RABBITMQ_PASSWORD": "my_rabbit.pw",
    }
    given, _, _ = settle(config, tmp_path, **mine)
    assert given["redis-password"] == "my-redis.pw\n"
    assert given["redis-url"] == "redis://:my-redis.pw@redis:6379/0\n"  # follows the password
    assert given["rabbitmq-url"] == "amqp://conquer:my_rabbit.pw@rabbitmq:5672//\n"
    assert (given["flower-user"], given["flower-password"]) == ("me\n", "my~flower_pw\n")
    assert given["redis-password"] != generated["redis-password"]
    # Taken out of .env again, the last value set stays: nothing changes under a running stack.
    assert settle(config, tmp_path)[0] == given


def test_show_prints_them_as_env_lines(config: dict[str, Any], tmp_path: Path) -> None:
    """`docker compose run --rm secrets show`: settles them (so it works before the first `up`), then
    prints them in the form `.env` takes."""
    _, shown, _ = settle(config, tmp_path, "show")
    stored = {path.name: path.read_text().strip() for path in tmp_path.iterdir()}
    assert shown == (
        f"FLOWER_USER={stored['flower-user']}\n"
        f"FLOWER_PASSWORD={stored['flower-password']}\n"
        f"REDIS_PASSWORD={stored['redis-password']}\n"
        f"RABBITMQ_PASSWORD={stored['rabbitmq-password']}\n"
    )
    assert settle(config, tmp_path, "show")[1] == shown


def test_an_unknown_command_is_refused(config: dict[str, Any], tmp_path: Path) -> None:
    result = settle_secrets(config, tmp_path, "rotate", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "secrets: usage: settle | show"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_PASSWORD", "p@ss/word"),
        ("FLOWER_USER", "ad:min"),
        ("FLOWER_PASSWORD", "two words"),
        ("RABBITMQ_PASSWORD", "rabbit@host"),
    ],
)
def test_a_value_that_cannot_travel_in_a_url_or_login_is_refused(
    config: dict[str, Any], tmp_path: Path, variable: str, value: str
) -> None:
    env = {"PATH": os.environ["PATH"], variable: value}
    result = settle_secrets(config, tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith("may hold only letters, digits and - . _ ~")
    assert value not in result.stderr
    assert not [url for url in URLS if (tmp_path / url).exists()], "stored a URL for a refused password"


def test_a_crash_mid_write_leaves_the_old_secret_and_no_debris(
    config: dict[str, Any], tmp_path: Path
) -> None:
    first, _, _ = settle(config, tmp_path)
    half = tmp_path / "redis-password.new"
    half.write_text("half-writ")
    half.chmod(0o440)  # as the script creates it
    again, _, _ = settle(config, tmp_path)
    assert again == first


def test_every_celery_process_reads_the_broker_url_from_the_file(
    config: dict[str, Any], tmp_path: Path
) -> None:
    stored, _, _ = settle(config, tmp_path)
    settings = Settings.from_env({ENV_BROKER_FILE: str(tmp_path / "redis-url")})
    assert settings.broker_url == stored["redis-url"].strip()
    assert settings.result_backend == settings.broker_url
    assert settings.broker_configured


def test_the_rabbitmq_workers_read_both_urls_from_files(config: dict[str, Any], tmp_path: Path) -> None:
    """`--profile rabbitmq`: chunks through RabbitMQ, results in Redis, both URLs from the volume."""
    stored, _, _ = settle(config, tmp_path)
    settings = Settings.from_env(
        {ENV_BROKER_FILE: str(tmp_path / "rabbitmq-url"), ENV_BACKEND_FILE: str(tmp_path / "redis-url")}
    )
    assert settings.broker_url == stored["rabbitmq-url"].strip()
    assert settings.result_backend == stored["redis-url"].strip()


def test_a_backend_url_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("redis://:pw@redis:6379/0\n")
    with pytest.raises(SettingsError, match=f"set {ENV_BACKEND} or {ENV_BACKEND_FILE}, not both"):
        Settings.from_env({ENV_BACKEND: "redis://localhost:6379/0", ENV_BACKEND_FILE: str(tmp_path / "url")})


def test_the_url_and_the_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("redis://:pw@redis:6379/0\n")
    with pytest.raises(SettingsError, match=f"set {ENV_BROKER} or {ENV_BROKER_FILE}, not both"):
        Settings.from_env({ENV_BROKER: "redis://localhost:6379/0", ENV_BROKER_FILE: str(tmp_path / "url")})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read .* \\(No such file or directory\\)"),
        ("\n", "is empty"),
        ("s3cret\n", "does not hold a URL"),
    ],
)
def test_a_broken_file_is_named_and_its_content_never_shown(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "redis-url"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=f"^{ENV_BROKER_FILE}: .*{reason}") as error:
        Settings.from_env({ENV_BROKER_FILE: str(path)})
    assert str(path) in str(error.value)
    assert "s3cret" not in str(error.value)


def test_the_cli_says_so_in_one_line_with_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "redis-url"
    result = conquer("workers", env={ENV_BROKER: "", ENV_BROKER_FILE: str(missing)})
    assert result.returncode == 2
    assert f"{ENV_BROKER_FILE}: cannot read {missing}" in one_line(result.stderr)
