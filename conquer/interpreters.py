"""Which Python ran a row, and the `--python` option that names another one to run rows under.

An `Interpreter` is what a row says about the build that ran it: its executable, its version, whether
it is a free-threaded build (`Py_GIL_DISABLED`) and whether the GIL was on. A free-threaded build can
run with the GIL on: `PYTHON_GIL=1`, or an extension module that does not declare itself safe without
it switches it back on when imported — so the GIL's state is read in the process that ran the work,
after the run (`conquer.usage`), never inferred from the build.

`--python PATH` is checked before anything runs (`find`): the file exists and is executable, it is a
Python >= 3.11, and it can import this conquer's runner (`conquer.runner`) — one line naming it and
what to do otherwise, exit 2. Light on purpose (stdlib and click only): `conquer --help` imports it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from conquer.machine import free_threaded_build, gil_enabled

#: The protocol `conquer.runner` speaks; a runner of another conquer version may speak another.
PROTOCOL = 1
#: How long an interpreter may take to start and import conquer's runner (a cold start of a loaded
#: machine's free-threaded build with psutil and the executors: about a second).
PROBE_S = 60.0

HELP = (
    "Run the rows under this Python (a path, or a command on PATH) instead of in this process; give it "
    "again for each build to compare, e.g. a free-threaded one and a GIL one. Each needs conquer "
    "installed; rounds stay interleaved across them."
)

HELP_RUN = "Run it under this Python (a path, or a command on PATH; it needs conquer installed)."

#: Runs under the candidate: the version first, in syntax any Python parses, then (>= 3.11) this
#: conquer's runner. sys.path[0] (the current directory) is dropped, as `-P` would: a conquer source
#: tree there must not pass for an installed one.
PROBE = """
import json, sys
del sys.path[0]
found = {"version": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable}
if tuple(sys.version_info[:2]) >= (3, 11):
    try:
        from conquer import interpreters, runner
        found.update(interpreters.this().to_dict(), protocol=interpreters.PROTOCOL)
    except Exception as error:
        found["error"] = "%s: %s" % (type(error).__name__, error)
sys.stdout.write(json.dumps(found) + "\\n")
"""


class InterpreterError(ValueError):
    """A `--python` that cannot run conquer's rows; the message names it and says what to do."""


@dataclass(frozen=True, slots=True)
class Interpreter:
    executable: str
    version: str
    free_threaded: bool
    #: Whether the GIL was on: when read (`this()`), or, for a row, after any of its runs.
    gil_enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> Interpreter:
        return cls(
            str(found["executable"]),
            str(found["version"]),
            bool(found["free_threaded"]),
            bool(found["gil_enabled"]),
        )

    def with_gil(self, enabled: bool) -> Interpreter:
        return replace(self, gil_enabled=enabled)

    @property
    def short(self) -> str:
        """`3.11.2`, or `3.13.5t` for a free-threaded build (t: as CPython names its binaries)."""
        return f"{self.version}{'t' if self.free_threaded else ''}"


def names(found: Sequence[Interpreter]) -> list[str]:
    """Each interpreter's short name, `#N` added (the Nth --python) where two would read the same."""
    short = [interpreter.short for interpreter in found]
    return [f"{name} #{index + 1}" if short.count(name) > 1 else name for index, name in enumerate(short)]


def this() -> Interpreter:
    """The Python running this process, its GIL as it is now."""
    return Interpreter(sys.executable, platform.python_version(), free_threaded_build(), gil_enabled())


def install_hint(path: str) -> str:
    """How to install this conquer under `path`."""
    root = Path(__file__).resolve().parents[1]
    source = str(root) if (root / "pyproject.toml").exists() else "conquer's source directory"
    return f"install it there ({path} -m pip install -e {source}), or make a venv with `make freethreaded`"


def find(given: str) -> Interpreter:
    """The interpreter `given` names, checked to run conquer's rows; `InterpreterError` otherwise."""
    what = "give a Python >= 3.11 with conquer installed (e.g. .venv-ft/bin/python from `make freethreaded`)"
    path = given if os.sep in given else shutil.which(given)
    if path is None or not os.path.exists(path):
        raise InterpreterError(f"{given}: no such file{'' if os.sep in given else ' or command'}; {what}")
    # The mode too: root may access(X_OK) a file that has no execute bit at all.
    if not os.path.isfile(path) or not os.access(path, os.X_OK) or not os.stat(path).st_mode & 0o111:
        raise InterpreterError(f"{given}: not an executable file; {what}")
    # abspath, never realpath: a venv's python is a symlink to its base, and must stay the venv's.
    path = os.path.abspath(path)
    try:
        done = subprocess.run(
            [path, "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"{given}: did not answer within {PROBE_S:g} s; {what}") from None
    except OSError as error:
        raise InterpreterError(f"{given}: cannot be run ({error.strerror}); {what}") from None
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
        version = tuple(int(part) for part in found["version"].split("."))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        raise InterpreterError(
            f"{given}: does not answer as Python does (exit status {done.returncode}); {what}"
        ) from None
    if version < (3, 11):
        raise InterpreterError(f"{given} is Python {found['version']}; conquer needs 3.11 or later: {what}")
    if "error" in found:
        cause = f"Python {found['version']}) cannot import conquer ({found['error']}"
        raise InterpreterError(f"{given} ({cause}): {install_hint(given)}")
    if found.get("protocol") != PROTOCOL:
        raise InterpreterError(
            f"{given} has another version of conquer (runner protocol {found.get('protocol')}, this one "
            f"{PROTOCOL}): {install_hint(given)}"
        )
    return Interpreter.from_dict(found)


def option(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[Interpreter, ...]:
    """Click callback of `compare --python` (given any number of times): each checked, in order."""
    found: dict[str, Interpreter] = {}
    try:
        for given in values:
            found.setdefault(given, find(given))
    except InterpreterError as error:
        raise click.BadParameter(str(error), param=param) from None
    return tuple(found[given] for given in values)


def one(ctx: click.Context, param: click.Parameter, value: str | None) -> Interpreter | None:
    """Click callback of `run --python` (given once)."""
    return option(ctx, param, (value,))[0] if value is not None else None


def without_option(argv: list[str], name: str = "--python") -> list[str]:
    """`argv` without `name VALUE` and `name=VALUE` (click has parsed it already: only these forms)."""
    kept: list[str] = []
    skip = False
    for index, argument in enumerate(argv):
        if skip:
            skip = False
        elif argument == "--":
            return kept + argv[index:]
        elif argument == name:
            skip = True
        elif not argument.startswith(f"{name}="):
            kept.append(argument)
    return kept


def hand_over(interpreter: Interpreter, argv: list[str] | None = None) -> None:
    """Become `conquer ARGV` run by `interpreter` (without its --python): the same command, its output,
    its exit status and its Ctrl-C, under the other build. `-P`: never the current directory's source."""
    arguments = without_option(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(interpreter.executable, [interpreter.executable, "-P", "-m", "conquer", *arguments])
