"""What `make compose-test` promises without an engine: it runs every `docker compose` command of the
README and docs/ word for word, and a skip is never mistaken for a pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.compose import compose_up
from tests.compose.composefile import ROOT


def readme_compose_commands() -> set[str]:
    """Every `docker compose ...` line of the documents' shell blocks, its trailing comment dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", compose_up.documentation(), re.MULTILINE | re.DOTALL)
    lines = (line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines())
    return {line for line in lines if line.startswith("docker compose")}


def test_compose_up_runs_exactly_the_readme_compose_commands() -> None:
    assert readme_compose_commands() <= set(compose_up.README_COMMANDS)
    documented = compose_up.documentation()
    for command in compose_up.README_COMMANDS:  # the rest are in the documents' prose, in backquotes
        assert f"`{command}`" in documented or command in readme_compose_commands(), command


def test_without_an_engine_it_exits_77_with_one_line_saying_why() -> None:
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no `docker` on it
    result = subprocess.run(
        [sys.executable, "-m", "tests.compose.compose_up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == compose_up.SKIPPED == 77
    assert result.stderr == "compose-test skipped: no `docker` command on PATH.\n"
    assert result.stdout == ""
