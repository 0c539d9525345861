"""Every `$ conquer ...` line of the README's broker sections runs and succeeds: those of "Through a
broker" with no broker configured (each starts its own embedded stack), those of "Driving a running
stack" against the session's stack."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import Stack, conquer

README = Path(__file__).resolve().parents[2] / "README.md"
EMBEDDED = "## Through a broker: Celery on Redis"
RUNNING = "## Driving a running stack"


def commands(heading: str) -> list[str]:
    section = README.read_text(encoding="utf-8").partition(heading)[2].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ conquer ")]


def test_both_sections_have_commands() -> None:
    assert commands(EMBEDDED)
    assert commands(RUNNING)


@pytest.mark.parametrize("command", commands(EMBEDDED))
def test_each_embedded_command_runs(command: str) -> None:
    unset = {key: "" for key in os.environ if key.startswith(("CELERY_", "CONQUER_"))}
    result = conquer(*shlex.split(command)[1:], timeout=90, env=unset)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("command", commands(RUNNING))
def test_each_stack_command_runs(celery_stack: Stack, command: str) -> None:
    result = conquer(*shlex.split(command)[1:], timeout=90, env=celery_stack.env)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
