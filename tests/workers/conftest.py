"""What the executor tests share beyond tests/conftest.py."""

from __future__ import annotations

import os
import signal

import pytest

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
