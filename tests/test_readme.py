"""The README stays true. Every `$ conquer ...` line of its ```console blocks runs here, through the
installed entry point, and succeeds — those of "Driving a running stack" against the session's Celery
stack, every other one with no broker configured, as a reader would run them. Every command of its
```sh blocks (long, interactive, or needing an engine) is one that a named test or CI runs."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import Stack, conquer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Sections whose commands talk to a stack that is already running.
NEEDS_A_RUNNING_STACK = "Driving a running stack"

#: Who runs each command of the ```sh blocks, by the command's first words: the file, and what in it
#: shows that it runs that command.
RUN_ELSEWHERE = {
    "make run": (".ci/run", "make run"),
    "make test": (".ci/run", "make test"),
    "make freethreaded": ("tests/test_make_freethreaded.py", '"make", "-s", "freethreaded"'),
    "make test-ft": (".ci/run", "make test-ft"),
    "make bench": ("tests/conquer/test_bench.py", 'conquer("bench"'),  # the same command, tiny sizes
    "conquer demo responsive-terminal": ("tests/demos/test_responsive_terminal.py", '"--frozen"'),
    "conquer demo responsive-tk": ("tests/demos/test_responsive_tk.py", "demos.responsive_tk"),
    "conquer submit": ("tests/conquer/test_stack_cli.py", '"submit"'),
    "conquer status": ("tests/conquer/test_stack_cli.py", '"status"'),
    "conquer result": ("tests/conquer/test_stack_cli.py", '"result"'),
    "conquer cancel": ("tests/conquer/test_stack_cli.py", '"cancel"'),
    "conquer up": ("tests/conquer/test_stack_cli.py", 'CONQUER, "up"'),
    "docker compose": ("tests/compose/compose_up.py", "docker compose"),
}


def blocks(language: str) -> list[tuple[str, str]]:
    """(section heading, command) for every command line of the README's ```language blocks."""
    found = []
    heading = ""
    inside = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside and line == f"```{language}"
            continue
        if not inside and line.startswith("## "):
            heading = line[3:]
        elif inside and line.strip():
            command = line.removeprefix("$ ") if language == "console" else line.split("  #")[0].strip()
            found.append((heading, command))
    return found


CONSOLE = blocks("console")


def test_console_blocks_hold_only_conquer_commands() -> None:
    assert len(CONSOLE) >= 20
    assert all(command.startswith("conquer ") for _, command in CONSOLE), CONSOLE


@pytest.mark.parametrize(("section", "command"), CONSOLE, ids=[command for _, command in CONSOLE])
def test_each_console_command_runs(section: str, command: str, request: pytest.FixtureRequest) -> None:
    if section == NEEDS_A_RUNNING_STACK:
        stack: Stack = request.getfixturevalue("celery_stack")
        env = stack.env
    else:
        env = {key: "" for key in os.environ if key.startswith(("CELERY_", "CONQUER_"))}
    result = conquer(*shlex.split(command)[1:], timeout=120, env=env)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(("section", "command"), blocks("sh"), ids=[command for _, command in blocks("sh")])
def test_each_other_command_is_run_by_a_named_test_or_ci(section: str, command: str) -> None:
    prefix = max((key for key in RUN_ELSEWHERE if command.startswith(key)), key=len, default=None)
    assert prefix is not None, f"nothing runs {command!r} (README section {section!r})"
    runner, evidence = RUN_ELSEWHERE[prefix]
    assert evidence in (ROOT / runner).read_text(encoding="utf-8"), f"{runner} does not run {prefix!r}"
