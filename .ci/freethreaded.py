"""A free-threaded CPython and a virtualenv of it with conquer installed: what `make freethreaded` runs.

Given an interpreter (`--python`, the Makefile's FT_PYTHON: any 3.13t/3.14t from uv, pyenv, deadsnakes
or a distribution), it checks that it is a free-threaded build of Python >= 3.13 and uses it. Without
one, it builds CPython from Debian's `python3.13` source package (suite trixie) once, into a cache
outside the repository (${XDG_CACHE_HOME:-~/.cache}/conquer/cpython-3.13t), and reuses it afterwards.
Then it creates the virtualenv (`--venv`) with `pip install -e '.[dev]'`, again only when pyproject.toml
or the interpreter changed. A second call therefore takes a second or two.

Nothing half-made is ever trusted: a build is renamed into the cache only once it ran as a
free-threaded Python (.ci/cpython_build.py), and a virtualenv counts as installed only once its stamp
(named after pyproject.toml and the interpreter) is written, as the main venv's is.

Usage::

    make freethreaded                          # build once (about 3 minutes, as root) or reuse
    make freethreaded FT_PYTHON=python3.14t    # use yours instead
    python3 .ci/freethreaded.py --venv .venv-ft [--python python3.13t]

Every failure is one line on stderr and one of these exit codes:

  2  the interpreter given is missing, does not run, is not free-threaded or is older than 3.13
     (or an unknown option)
  3  no interpreter given or cached, and no apt-get to build one with (not Debian or Ubuntu)
  4  building needs root (apt-get install of the build dependencies)
  5  apt-get failed (update, source download or install of the build dependencies)
  6  configure, make or make install failed, or what they built is not a free-threaded Python
  7  the virtualenv could not be created or conquer could not be installed into it
130  interrupted (Ctrl-C or SIGTERM); nothing half-built is left to be trusted
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from types import FrameType
from typing import NoReturn

from cpython_build import Exit, Failure, Interpreter, Interrupted, build, cache_dir, probe, run, say

ROOT = Path(__file__).resolve().parents[1]

#: The dev extra's tools that do not install on a free-threaded build: mypy's parser (ast-serialize)
#: ships abi3 wheels only, which such a build cannot load, and its sdist needs Rust and crates.io.
NOT_ON_FREE_THREADED = {"mypy"}


def refuse_unless_free_threaded(found: Interpreter | None, name: str) -> Interpreter:
    if found is None:
        raise Failure(Exit.REFUSED, f"{name} does not run as Python")
    if not found.free_threaded:
        raise Failure(
            Exit.REFUSED,
            f"{name} is Python {found.version} with the GIL, not a free-threaded build "
            "(Py_GIL_DISABLED): give a 3.13t or 3.14t, e.g. from `uv python install 3.14t`",
        )
    if found.version_info < (3, 13):
        raise Failure(Exit.REFUSED, f"{name} is Python {found.version}: free-threading needs >= 3.13")
    return found


def given(name: str) -> Interpreter:
    """The interpreter the user named, if it is one we can use."""
    label = f"FT_PYTHON={name}"
    located = shutil.which(name)
    if located is None:
        # which() skips files that exist but cannot be run: say which of the two it is.
        if Path(name).exists():
            raise Failure(Exit.REFUSED, f"{label} is not an executable file")
        raise Failure(Exit.REFUSED, f"{label}: no such interpreter (give a path or a name on PATH)")
    return refuse_unless_free_threaded(probe(Path(located).absolute()), label)


def install_venv(venv: Path, base: Interpreter) -> None:
    """`venv` with conquer installed editable (dev extra), unless its stamp says it already is."""
    key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + f"\0{base.path}\0{base.version}".encode()
    ).hexdigest()[:16]
    stamp = venv / f".installed-{key}"
    inside = probe(venv / "bin" / "python")
    if stamp.exists() and inside and inside.free_threaded:
        say(f"{venv} is up to date (Python {inside.version}, free-threaded)")
        return
    say(f"creating {venv} with Python {base.version} (free-threaded) and pip install -e '.[dev]'")
    create = [str(base.path), "-m", "venv", "--clear", str(venv)]
    status = subprocess.run(create, capture_output=True, text=True, check=False)
    if status.returncode != 0:
        last = (status.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Failure(Exit.VENV_FAILED, f"{base.path} -m venv {venv} failed: {last[:200]}")
    log = venv / "install.log"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run([*pip, "--upgrade", "pip"], log, code=Exit.VENV_FAILED, what="pip install --upgrade pip")
    # --prefer-binary: free-threaded wheels are still rare. Without it pip takes the newest release
    # even when only its sdist fits (hypothesis's needs a Rust toolchain and crates.io), where an
    # older release has a wheel that runs here.
    editable = [*pip, "--prefer-binary", "-e", str(ROOT), *dev_requirements()]
    run(editable, log, code=Exit.VENV_FAILED, what="pip install -e '.[dev]'")
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    say(f"{venv} ready: {venv}/bin/conquer, {venv}/bin/pytest")


def dev_requirements() -> list[str]:
    """The dev extra of pyproject.toml but for what cannot be installed on a free-threaded build and
    is not needed to run the tests there (type checking runs in the main virtualenv)."""
    with (ROOT / "pyproject.toml").open("rb") as project:
        dev: list[str] = tomllib.load(project)["project"]["optional-dependencies"]["dev"]
    return [
        requirement
        for requirement in dev
        if re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower() not in NOT_ON_FREE_THREADED
    ]


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"freethreaded: {message}", file=sys.stderr)
        sys.exit(Exit.REFUSED)


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = OneLineParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-ft", help="the virtualenv to create")
    parser.add_argument("--python", default="", help="a free-threaded Python to use instead of building one")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        base = given(args.python) if args.python else build(cache_dir())
        install_venv(args.venv, base)
    except Failure as failure:
        print(f"freethreaded: {failure}", file=sys.stderr)
        return failure.code
    except (KeyboardInterrupt, Interrupted):
        print("freethreaded: interrupted; nothing half-built was kept", file=sys.stderr)
        return Exit.INTERRUPTED
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
