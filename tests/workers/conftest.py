"""What the executor tests share beyond tests/conftest.py."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import Stack
from tests.rabbitmq_server import RabbitMQStack
from workers import ChunkResult, OnChunk


@pytest.fixture
def kill_first_worker() -> OnChunk:
    """A progress callback that SIGKILLs the worker process of the first chunk it hears of (once)."""
    killed: list[int] = []

    def kill(result: ChunkResult) -> None:
        if not killed:
            killed.append(result.pid)
            os.kill(result.pid, signal.SIGKILL)

    return kill


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_stack(request: pytest.FixtureRequest) -> Stack:
    """The session's stack on each broker in turn: Redis (`celery_stack`), then RabbitMQ (a private
    node, `tests.rabbitmq_server`; skipped in one line where rabbitmq-server is not installed)."""
    if request.param == "redis":
        stack: Stack = request.getfixturevalue("celery_stack")
        return stack
    rabbit: RabbitMQStack = request.getfixturevalue("rabbitmq_stack")
    return rabbit.stack
