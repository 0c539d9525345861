"""`make freethreaded` refuses what it cannot use in one line with its documented exit code, before it
builds or installs anything: an interpreter that is missing, cannot be run, is not Python or has the
GIL; and, with none given or cached, a machine without apt-get or a user who is not root. A build that
fails or is interrupted leaves nothing that a later call would trust. (The build itself, minutes
long, runs in CI: .ci/run.)

make's own exit status is 2 for every failing recipe; it names the script's code in its last line
("Error N"). So each case runs through make (the command users type) and through the script (the
exact code and a single line)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from conquer.machine import free_threaded_build
from tests.conftest import one_line, wait_until

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "freethreaded.py"


def ci_module(name: str) -> ModuleType:
    """A module of .ci/, which is a directory of scripts, not a package."""
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cpython_build = ci_module("cpython_build")

#: The exit codes .ci/freethreaded.py documents, spelled out: scripts (.ci/run) rely on the numbers.
REFUSED, NO_APT, NOT_ROOT, APT_FAILED, INTERRUPTED = 2, 3, 4, 5, 130


def make_and_script(
    python: str, args: list[str], env: dict[str, str], prefix: list[str] | None = None
) -> tuple[str, int]:
    """Run `make freethreaded` and then the script itself with the same inputs; return the script's
    one line and exit code, after checking that make printed the same line and named the same code."""
    # As a user types it: not a sub-make of `make test` (MAKELEVEL would make it say "make[1]").
    sub_make = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    env = {**{key: value for key, value in os.environ.items() if key not in sub_make}, **env}
    ft = [f"FT_PYTHON={arg}" for arg in args]
    by_make = subprocess.run(
        [*(prefix or []), "make", "-s", "freethreaded", f"PYTHON={python}", *ft],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    direct = subprocess.run(
        [*(prefix or []), python, str(SCRIPT), *(["--python", *args] if args else [])],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    line = one_line(direct.stderr)
    assert by_make.returncode == 2, by_make.stderr
    lines = by_make.stderr.splitlines()
    assert lines[0] == line, by_make.stderr
    assert lines[1].startswith("make: ***"), lines
    assert lines[1].endswith(f"Error {direct.returncode}"), lines
    assert len(lines) == 2, by_make.stderr
    return line, direct.returncode


def empty_cache(tmp_path: Path) -> dict[str, str]:
    """No interpreter cached: the script would have to build one."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_a_missing_interpreter_is_refused(tmp_path: Path) -> None:
    line, code = make_and_script(sys.executable, ["no-such-python3.13t"], empty_cache(tmp_path))
    assert code == REFUSED
    assert line == (
        "freethreaded: FT_PYTHON=no-such-python3.13t: no such interpreter (give a path or a name on PATH)"
    )


def test_a_file_that_cannot_be_run_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "python3.13t"
    plain.write_text("")
    plain.chmod(0o644)
    line, code = make_and_script(sys.executable, [str(plain)], empty_cache(tmp_path))
    assert code == REFUSED
    assert line == f"freethreaded: FT_PYTHON={plain} is not an executable file"


def test_a_program_that_is_not_python_is_refused(tmp_path: Path) -> None:
    line, code = make_and_script(sys.executable, [shutil.which("true") or "/bin/true"], empty_cache(tmp_path))
    assert code == REFUSED
    assert line.endswith("does not run as Python")


@pytest.mark.skipif(free_threaded_build(), reason="this interpreter is free-threaded: no GIL build to give")
def test_an_interpreter_with_the_gil_is_refused(tmp_path: Path) -> None:
    line, code = make_and_script(sys.executable, [sys.executable], empty_cache(tmp_path))
    assert code == REFUSED
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"is Python {version} with the GIL, not a free-threaded build" in line


def test_without_apt_get_it_says_it_cannot_build(tmp_path: Path) -> None:
    # A PATH with what make and its Makefile call, and no apt-get.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "cksum", "cut"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    env = {**empty_cache(tmp_path), "PATH": str(bin_dir)}
    line, code = make_and_script(sys.executable, [], env)
    assert code == NO_APT
    assert line.startswith("freethreaded: no apt-get: building CPython here needs Debian or Ubuntu")


def test_as_another_user_than_root_it_says_building_needs_root(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get here: the script stops at that first (see the test above)")
    prefix: list[str] = []
    python = sys.executable
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        # The test's own interpreter may sit in root's 0700 home: nobody runs the system's.
        python = shutil.which("python3", path="/usr/bin:/bin") or ""
        if not setpriv or not python:
            pytest.skip("running as root, and no setpriv or /usr/bin/python3 to run as nobody with")
        prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    line, code = make_and_script(python, [], empty_cache(tmp_path), prefix)
    assert code == NOT_ROOT
    assert line.startswith("freethreaded: building CPython needs root (apt-get install")


def can_start_a_build() -> str | None:
    """Why the tests of a starting build cannot run here, or None. They need root and apt-get, and
    every build dependency installed already: a test must not apt-get install system packages."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "needs root and apt-get"
    for package in cpython_build.BUILD_DEPENDENCIES:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
        )
        if status.stdout != "install ok installed":
            return f"build dependency {package} is not installed (the first `make freethreaded` installs it)"
    return None


def nothing_to_trust(cache: Path) -> None:
    assert not (cache / cpython_build.BUILT).exists()
    assert not list(cache.glob("build-*")), "a build directory was left behind"


@pytest.mark.skipif(can_start_a_build() is not None, reason=str(can_start_a_build()))
def test_a_failed_download_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**os.environ, **empty_cache(tmp_path), "FT_DEBIAN_MIRROR": f"file://{tmp_path}/no-mirror"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--venv", str(tmp_path / "venv")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == APT_FAILED, result.stderr
    assert one_line(result.stderr).startswith(f"freethreaded: apt-get update of file://{tmp_path}/no-mirror")
    nothing_to_trust(tmp_path / "cache" / "conquer")
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(can_start_a_build() is not None, reason=str(can_start_a_build()))
def test_an_interrupted_build_leaves_nothing_behind_and_no_step_running(tmp_path: Path) -> None:
    # A mirror that accepts the connection and never answers: the build is held in its download,
    # inside its temporary directory, for as long as the test needs.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        cache = tmp_path / "cache" / "conquer"
        env = {**os.environ, **empty_cache(tmp_path), "FT_DEBIAN_MIRROR": f"http://127.0.0.1:{port}/debian"}
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--venv", str(tmp_path / "venv")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        log = cache / "build.log"
        wait_until(lambda: log.exists() and "--error-on=any update" in log.read_text(), 60, "no download")
        apt = [p for p in psutil.process_iter(["cmdline"]) if "--error-on=any" in str(p.info["cmdline"])]
        apt = [p for p in apt if str(tmp_path) in str(p.info["cmdline"])]
        assert apt, "the apt-get step was not seen running"
        steps = apt + [child for p in apt for child in p.children(recursive=True)]  # its http method
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the whole group
        _, stderr = process.communicate(timeout=30)
        # Still inside `with`: once the silent mirror closes, a forgotten apt-get would fail and exit
        # by itself, and the test could not tell.
        _, alive = psutil.wait_procs(steps, timeout=5)
        for left in alive:
            left.kill()
        assert not alive, f"left running: {[p.pid for p in alive]} of {[p.info['cmdline'] for p in apt]}"
    assert process.returncode == INTERRUPTED
    assert one_line(stderr) == "freethreaded: interrupted; nothing half-built was kept"
    nothing_to_trust(cache)
