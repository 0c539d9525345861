"""Every `$ conquer ...` line of the README's lessons section runs and succeeds, as documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import conquer

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## The lessons of the chapter, one command each"


def commands(heading: str = SECTION) -> list[str]:
    """The `$ conquer ...` lines of the README's ```console blocks under `heading` (to the next ##)."""
    text = README.read_text(encoding="utf-8")
    section = text.partition(heading)[2].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ conquer ")]


def test_the_section_has_commands() -> None:
    assert len(commands()) >= 5


@pytest.mark.parametrize("command", commands())
def test_each_command_runs(command: str) -> None:
    result = conquer(*shlex.split(command)[1:], timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
