"""Settings come from the environment once, are validated, and never print a password."""

from __future__ import annotations

import pytest

from tests.conftest import fresh_python
from workers.celery.brokers import rabbitmq
from workers.celery.settings import DEFAULT_BROKER_URL, Settings, SettingsError, mask


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.broker_url == settings.result_backend == DEFAULT_BROKER_URL
    assert not settings.broker_configured
    assert settings.worker_concurrency >= 1
    assert settings.hard_time_limit < settings.visibility_timeout


def test_reading_and_checking_settings_loads_no_client_library() -> None:
    """The CLI checks settings before it starts anything, and `conquer.machine` reads them for every
    benchmark record: the broker modules they ask about URLs must not pull in Celery, kombu or redis-py."""
    probe = (
        "import sys; from workers.celery.settings import Settings; Settings.from_env({}); "
        "Settings(broker_url='redis://h/1'); Settings(broker_url='amqp://h//', result_backend='redis://h'); "
        "print(sorted({'celery', 'kombu', 'redis'} & set(sys.modules)))"
    )
    assert fresh_python(probe).strip() == "[]"


def test_the_result_backend_defaults_to_the_broker() -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": "redis://:pw@redis:6379/1"})
    assert settings.broker_configured
    assert settings.result_backend == "redis://:pw@redis:6379/1"
    separate = Settings.from_env({"CELERY_BROKER_URL": "redis://a/0", "CELERY_RESULT_BACKEND": "redis://b/2"})
    assert separate.result_backend == "redis://b/2"


def test_to_env_rebuilds_the_same_settings() -> None:
    settings = Settings.from_env(
        {
            "CELERY_BROKER_URL": "redis+socket:///tmp/x/redis.sock",
            "CONQUER_KEY_PREFIX": "stack-7",
            "CONQUER_WORKER_CONCURRENCY": "3",
            "CONQUER_WORKER_POOL": "solo",
            "CONQUER_VISIBILITY_TIMEOUT": "40",
            "CONQUER_CHUNK_TIME_LIMIT": "30",
            "CONQUER_RESULT_EXPIRES": "600",
        }
    )
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"CELERY_BROKER_URL": "sqs://guest@localhost//"},
            "CELERY_BROKER_URL must be a Redis or RabbitMQ URL",
        ),
        (
            {"CELERY_BROKER_URL": "amqp://guest@localhost//"},
            "CELERY_BROKER_URL is a RabbitMQ URL: set CELERY_RESULT_BACKEND to a Redis URL too",
        ),
        (
            {"CELERY_BROKER_URL": "amqp://h//", "CELERY_RESULT_BACKEND": "amqp://h//"},
            "CELERY_RESULT_BACKEND must be a Redis URL",
        ),
        (
            {"CELERY_BROKER_URL": "amqp://h:x//", "CELERY_RESULT_BACKEND": "redis://h/0"},
            "CELERY_BROKER_URL is 'amqp://h:x//': its port must be a number",
        ),
        (
            {
                "CELERY_BROKER_URL": "amqps://h//",
                "CELERY_RESULT_BACKEND": "redis://h/0",
                "CONQUER_CHUNK_TIME_LIMIT": "1797",
            },
            "must stay below RabbitMQ's consumer_timeout",
        ),
        ({"CELERY_RESULT_BACKEND": "db+sqlite:///x"}, "CELERY_RESULT_BACKEND must be a Redis URL"),
        ({"CELERY_BROKER_URL": "redis"}, "CELERY_BROKER_URL must be a Redis or RabbitMQ URL"),
        (
            {"CELERY_BROKER_URL": "redis://localhost/zero"},
            "CELERY_BROKER_URL is .*: its database must be a number",
        ),
        (
            {"CELERY_RESULT_BACKEND": "redis://h/x"},
            "CELERY_RESULT_BACKEND is .*: its database must be a number",
        ),
        ({"CONQUER_WORKER_POOL": "gevent"}, "CONQUER_WORKER_POOL must be one of prefork, threads, solo"),
        ({"CONQUER_WORKER_CONCURRENCY": "0"}, "CONQUER_WORKER_CONCURRENCY must be at least 1"),
        ({"CONQUER_WORKER_CONCURRENCY": "two"}, "must be a whole number"),
        ({"CONQUER_RESULT_EXPIRES": "0"}, "CONQUER_RESULT_EXPIRES must be at least 60"),
        ({"CONQUER_KEY_PREFIX": "a b"}, "CONQUER_KEY_PREFIX may hold only"),
        ({"CONQUER_CHUNK_TIME_LIMIT": "20"}, "must exceed the chunk hard time limit"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(environment: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environment)


def test_a_refused_url_is_quoted_without_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            {"CELERY_BROKER_URL": "amqp://user:hunter2@host:port//", "CELERY_RESULT_BACKEND": "redis://"}
        )
    assert "hunter2" not in str(refused.value)
    assert "user:***@host" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:s3cret@10.0.0.1/2", "redis://user:***@10.0.0.1/2"),
        (
            "rediss://:p%40ss@host:6380/0?ssl_cert_reqs=required",
            "rediss://:***@host:6380/0?ssl_cert_reqs=required",
        ),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis+socket:///tmp/conquer-x/redis.sock", "redis+socket:///tmp/conquer-x/redis.sock"),
        ("amqp://conquer:s3cret@rabbit:5672/stack", "amqp://conquer:***@rabbit:5672/stack"),
        ("amqps://guest@host//", "amqps://guest@host//"),
    ],
)
def test_mask_hides_only_the_password(url: str, shown: str) -> None:
    assert mask(url) == shown


# ------------------------------------------------------------------- limits that depend on the broker

AMQP = {
    "CELERY_BROKER_URL": "amqp://conquer:pw@rabbit:5672//",
    "CELERY_RESULT_BACKEND": "redis://redis:6379/0",
}


def test_on_rabbitmq_the_visibility_timeout_no_longer_bounds_a_chunk() -> None:
    """Redis refuses a chunk hard time limit at or above the visibility timeout (a chunk still running
    would be handed out twice); RabbitMQ requeues only when the connection closes, so the same
    settings are accepted there, and its default chunk limit is 25 min (below its consumer_timeout)."""
    long_chunks = {"CONQUER_CHUNK_TIME_LIMIT": "120", "CONQUER_VISIBILITY_TIMEOUT": "20"}
    with pytest.raises(SettingsError, match="must exceed the chunk hard time limit"):
        Settings.from_env({"CELERY_BROKER_URL": "redis://redis:6379/0", **long_chunks})
    assert Settings.from_env({**AMQP, **long_chunks}).hard_time_limit == 123
    assert Settings.from_env(AMQP).chunk_time_limit == 1500
    assert Settings.from_env(AMQP).hard_time_limit < 1800  # RabbitMQ's default consumer_timeout
    assert Settings.from_env({"CELERY_BROKER_URL": "redis://redis:6379/0"}).chunk_time_limit == 15


def test_the_rabbitmq_config_has_the_measured_heartbeat_classic_queues_and_no_confirms() -> None:
    from workers.celery.app import config

    amqp = config(Settings.from_env(AMQP))
    assert amqp["broker_heartbeat"] == 5
    assert amqp["task_default_queue_type"] == "classic"
    assert amqp["broker_transport_options"] == {"confirm_publish": False}
    assert amqp["result_backend"] == "redis://redis:6379/0"
    redis = config(Settings.from_env({"CELERY_BROKER_URL": "redis://redis:6379/0"}))
    assert "broker_heartbeat" not in redis
    assert redis["broker_transport_options"]["visibility_timeout"] == 20


def test_a_chunk_limit_nobody_chose_follows_the_broker_and_a_chosen_one_stays() -> None:
    """The embedded stack moves its settings onto a private RabbitMQ node (`--broker rabbitmq`): the
    default limit becomes RabbitMQ's (nothing to keep below a visibility timeout there), while a limit
    set in CONQUER_CHUNK_TIME_LIMIT is the user's and stays."""
    url = AMQP["CELERY_BROKER_URL"]
    moved = Settings.from_env({}).on_broker(url)
    assert (moved.broker_url, moved.chunk_time_limit) == (url, rabbitmq.CHUNK_TIME_LIMIT_S)
    assert Settings.from_env({"CONQUER_CHUNK_TIME_LIMIT": "12"}).on_broker(url).chunk_time_limit == 12
