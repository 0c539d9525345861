"""Running a demo exactly as a learner would, and reading its tagged lines back."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

#: Every line a demo prints through `say`: ``[pid 4242 MainThread] text``.
TAGGED = re.compile(r"^\[pid (?P<pid>\d+) (?P<thread>\S+)\] (?P<text>.*)$")


@dataclass(frozen=True)
class Line:
    pid: int
    thread: str
    text: str


def demo(module: str, *arguments: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`python -m demos.MODULE ARGS`, failing the test if it takes longer than `timeout`."""
    return subprocess.run(
        [sys.executable, "-m", f"demos.{module}", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tagged(output: str) -> list[Line]:
    lines = []
    for raw in output.splitlines():
        match = TAGGED.match(raw.strip())
        if match:
            lines.append(Line(int(match["pid"]), match["thread"], match["text"]))
    return lines


def said(output: str, pattern: str) -> list[tuple[Line, re.Match[str]]]:
    """The tagged lines whose text matches `pattern` (searched), with their matches."""
    found = []
    for line in tagged(output):
        match = re.search(pattern, line.text)
        if match:
            found.append((line, match))
    return found


def main_pid(output: str) -> int:
    """The demo's own process: the one that printed the last tagged line."""
    return tagged(output)[-1].pid
