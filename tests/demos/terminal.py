"""A program run in a real pseudo-terminal, driven by keys and read back as a person would see it."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest


class Terminal:
    """A command attached to a pty: `press` keys, `expect` output, all with deadlines."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,  # the pty becomes its controlling terminal, as in a real shell
            env={**os.environ, **(env or {})},
        )
        os.close(slave)
        self.output = ""

    @classmethod
    def module(cls, module: str, *arguments: str, env: dict[str, str] | None = None) -> Terminal:
        """`python -m MODULE ARGS` in a pty."""
        return cls([sys.executable, "-m", module, *arguments], env)

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            with contextlib.suppress(OSError):  # EIO: the program exited and closed the terminal
                self.output += os.read(self.master, 65536).decode(errors="replace")

    def expect(self, pattern: str, timeout: float = 30) -> int:
        """Wait until `pattern` appears in the output; return where it ends."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.output)):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout} s waiting for {pattern!r}; the screen said:\n{self.output}"
                )
            self._read(0.05)
        return match.end()

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.05)
        self._read(0)
        return self.process.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
