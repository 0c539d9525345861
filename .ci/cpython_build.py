"""Making a free-threaded CPython: probing an interpreter, running a logged build step, and building
CPython once from Debian's `python3.13` source package (suite trixie) into a cache. Used by
.ci/freethreaded.py (`make freethreaded`), which documents the exit codes defined here.

The build never touches the system's apt configuration: the source comes through a private sources
list, lists and cache directory. Nothing half-built is ever trusted: the build runs in a temporary
directory of the cache, and its result is renamed into place only after it ran as a free-threaded
Python; a build-* directory found under the lock is what a killed build left, and is removed.
FT_DEBIAN_MIRROR names another Debian mirror than the one this machine's apt uses.

Usage::

    python3 .ci/freethreaded.py    # builds (or finds) ~/.cache/conquer/cpython-3.13t, then .venv-ft
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

#: Debian's source package and the suite that carries it (3.14's were not downloadable here).
SOURCE_PACKAGE, SUITE = "python3.13", "trixie"
#: Where the built interpreter lives inside the cache, named after what it is.
BUILT = "cpython-3.13t"
#: What `./configure` and `make` need, all in Debian 12 (bookworm). libmpdec-dev is not: CPython then
#: builds its bundled copy.
BUILD_DEPENDENCIES = (
    "build-essential", "pkg-config", "xz-utils", "libssl-dev", "zlib1g-dev", "libffi-dev",
    "libsqlite3-dev", "libbz2-dev", "liblzma-dev", "libreadline-dev", "uuid-dev", "libgdbm-dev",
    "tk-dev", "libexpat1-dev",
)  # fmt: skip
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: Runs under any Python, even 2.7, so that a wrong FT_PYTHON gets a clear refusal, not a SyntaxError.
PROBE = (
    "import sys, sysconfig; v = sys.version_info; "
    "print('%d.%d.%d %s' % (v[0], v[1], v[2], bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))"
)


class Exit(IntEnum):
    """The exit codes of `make freethreaded` (.ci/freethreaded.py says what each means)."""

    OK = 0
    REFUSED = 2
    NO_APT = 3
    NOT_ROOT = 4
    APT_FAILED = 5
    BUILD_FAILED = 6
    VENV_FAILED = 7
    INTERRUPTED = 130


class Failure(Exception):
    """One line for stderr and the exit code that goes with it."""

    def __init__(self, code: Exit, line: str) -> None:
        super().__init__(line)
        self.code = code


class Interrupted(Exception):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs."""


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: str
    free_threaded: bool

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))


def say(line: str) -> None:
    print(f"freethreaded: {line}", flush=True)


def probe(path: Path) -> Interpreter | None:
    """What `path` is, or None if it does not run as Python."""
    try:
        answer = subprocess.run(
            [str(path), "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
        )
        version, free_threaded = answer.stdout.split()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        return None
    return Interpreter(path, version, free_threaded == "True")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conquer"


def built_python(prefix: Path) -> Path:
    return prefix / "bin" / "python3.13t"


def cached(prefix: Path) -> Interpreter | None:
    found = probe(built_python(prefix))
    return found if found and found.free_threaded else None


def debian_mirror() -> str:
    """The Debian mirror this machine's own apt uses (the one known to answer), else deb.debian.org.
    FT_DEBIAN_MIRROR overrides it."""
    if os.environ.get("FT_DEBIAN_MIRROR"):
        return os.environ["FT_DEBIAN_MIRROR"]
    candidates: list[str] = []
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in sources.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line).split()  # without its [option=value ...]
            if len(words) >= 2 and words[0] in ("deb", "deb-src"):
                candidates.append(words[1])
    # The main archive, not debian-security or an Ubuntu mirror: only it carries trixie's sources.
    return next((uri for uri in candidates if uri.rstrip("/").endswith("/debian")), DEFAULT_MIRROR)


def run(
    command: list[str],
    log: Path,
    *,
    code: Exit,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a build step with its output appended to `log`; a failure is one line naming the log.
    The step leads a process group of its own, so an interruption stops all of it (make's compilers
    too) before the clean-up removes the directory they write to."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        step = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        try:
            returncode = step.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):  # the whole group may be gone already
                os.killpg(step.pid, signal.SIGKILL)
            step.wait()
            raise
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        out.write(f"# exit {returncode} after {time.monotonic() - started:.1f} s, {cpu:.1f} s of CPU\n")
    if returncode != 0:
        raise Failure(code, f"{what} failed (exit {returncode}): {telling_line(log)} — log: {log}")


def telling_line(log: Path) -> str:
    """The line of a failed step's output most likely to say why: its last error, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("# exit ")]
    errors = [line for line in lines if line.lower().startswith(("error", "e:", "fatal"))]
    return (errors or lines or ["(no output)"])[-1][:200]


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache: a second `make freethreaded` waits, then finds the result."""
    with (cache / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(cache: Path) -> Interpreter:
    """The cached free-threaded CPython, built first if there is none."""
    prefix = cache / BUILT
    found = cached(prefix)
    if found:
        say(f"using the cached Python {found.version} (free-threaded) in {prefix}")
        return found
    if shutil.which("apt-get") is None:
        raise Failure(
            Exit.NO_APT,
            "no apt-get: building CPython here needs Debian or Ubuntu; "
            "give a free-threaded Python instead: make freethreaded FT_PYTHON=python3.13t",
        )
    if os.geteuid() != 0:
        raise Failure(
            Exit.NOT_ROOT,
            "building CPython needs root (apt-get install of its build dependencies); "
            "run as root, or give one: make freethreaded FT_PYTHON=python3.13t",
        )
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache):
        found = cached(prefix)  # built by another call while this one waited for the lock
        if found:
            return found
        # Under the lock no other build runs: a build-* directory left now is from a killed build.
        for stale in cache.glob("build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)  # there but not a free-threaded Python: damaged
        work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
        try:
            return build_in(work, prefix, cache / "build.log")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def build_in(work: Path, prefix: Path, log: Path) -> Interpreter:
    log.write_text("")
    say(f"building a free-threaded CPython once (about 3 minutes on 2 cores); log: {log}")
    install_build_dependencies(log)
    orig = fetch_source(work, log)
    say(f"configure --disable-gil, make, make install ({orig.name})")
    run(["tar", "xf", str(orig)], log, code=Exit.BUILD_FAILED, what="unpacking the source", cwd=work)
    source = next(path for path in work.iterdir() if path.is_dir() and path.name.startswith("Python-"))
    # --prefix is the final place; DESTDIR stages the install beside the build, and the finished
    # tree is renamed into place (same file system, so atomically) only once it has run.
    # ensurepip is skipped (the virtualenv brings its own pip), and so is the test suite: Lib/test is
    # most of what `make install` byte-compiles, three times over.
    configure = [
        *("./configure", "--disable-gil", f"--prefix={prefix}"),
        *("--without-ensurepip", "--disable-test-modules"),
    ]
    # OPT is configure's default for gcc without -g: the same -O3 code, and a third less CPU time to
    # build (measured: 133 s against 191 s of CPU for `make`), for debug symbols nobody here reads.
    optimised = {**os.environ, "OPT": "-DNDEBUG -O3 -Wall"}
    run(configure, log, code=Exit.BUILD_FAILED, what="./configure", cwd=source, env=optimised)
    jobs = f"-j{os.cpu_count() or 1}"
    run(["make", jobs], log, code=Exit.BUILD_FAILED, what="make", cwd=source)
    stage = work / "stage"
    run(["make", "install", f"DESTDIR={stage}"], log, code=Exit.BUILD_FAILED, what="make install", cwd=source)
    staged = stage / prefix.relative_to(prefix.anchor)
    found = probe(built_python(staged))
    if found is None or not found.free_threaded:
        raise Failure(Exit.BUILD_FAILED, f"the build did not give a free-threaded Python — log: {log}")
    (staged / "conquer-build.txt").write_text(f"{orig.name} OPT='{optimised['OPT']}' {' '.join(configure)}\n")
    staged.rename(prefix)
    say(f"built Python {found.version} (free-threaded) into {prefix}")
    return Interpreter(built_python(prefix), found.version, True)


def install_build_dependencies(log: Path) -> None:
    missing = [
        package
        for package in BUILD_DEPENDENCIES
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
        ).stdout
        != "install ok installed"
    ]
    if not missing:
        return
    say(f"apt-get install {' '.join(missing)}")
    # The system's own lists may be stale or absent (a fresh container): refresh them first.
    run(["apt-get", "-q", "update"], log, code=Exit.APT_FAILED, what="apt-get update")
    install = ["apt-get", "-q", "-y", "--no-install-recommends", "install", *missing]
    run(install, log, code=Exit.APT_FAILED, what=f"apt-get install {' '.join(missing)}")


def fetch_source(work: Path, log: Path) -> Path:
    """Download (and have apt verify against trixie's signed index) the upstream tarball of Debian's
    source package — with a private sources list, lists and cache, so the system's apt configuration
    and state are untouched."""
    mirror = debian_mirror()
    say(f"apt-get source {SOURCE_PACKAGE}/{SUITE} from {mirror}")
    if not KEYRING.exists():
        hint = "apt-get install debian-archive-keyring"
        raise Failure(Exit.APT_FAILED, f"no {KEYRING} to verify Debian's index with: {hint}")
    apt_dir = work / "apt"
    (apt_dir / "lists" / "partial").mkdir(parents=True)
    (apt_dir / "cache").mkdir()
    sources = apt_dir / "sources.list"
    sources.write_text(f"deb-src [signed-by={KEYRING}] {mirror} {SUITE} main\n")
    private = [
        f"-oDir::Etc::sourcelist={sources}",
        "-oDir::Etc::sourceparts=-",
        f"-oDir::State::Lists={apt_dir / 'lists'}",
        f"-oDir::Cache={apt_dir / 'cache'}",
        # The private directories may be in a 0700 home that apt's _apt download user cannot enter;
        # apt would then download as root anyway, with a warning on every run.
        "-oAPT::Sandbox::User=root",
    ]
    update = ["apt-get", *private, "-q", "--error-on=any", "update"]
    run(update, log, code=Exit.APT_FAILED, what=f"apt-get update of {mirror} {SUITE}")
    command = ["apt-get", *private, "-q", "source", "--download-only", f"{SOURCE_PACKAGE}/{SUITE}"]
    run(command, log, code=Exit.APT_FAILED, what=f"apt-get source {SOURCE_PACKAGE}/{SUITE}", cwd=work)
    found = sorted(work.glob(f"{SOURCE_PACKAGE}_*.orig.tar.*"))
    if not found:
        raise Failure(Exit.APT_FAILED, f"apt-get source left no {SOURCE_PACKAGE}_*.orig.tar.* — log: {log}")
    return found[0]
