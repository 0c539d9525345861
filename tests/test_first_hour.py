"""A newcomer's first hour, scripted: README.md's commands in the order it shows them, run as someone
who has only the README and `--help` would run them — no CELERY_* or CONQUER_* variable, a fresh HOME.

Where the commands come from: README.md itself, read here (`tests.test_readme.blocks`), in reading
order. Every `conquer` command of the README runs; the others are in SKIPPED with the reason and the
file that runs them instead. `conquer up` runs in the background as "the first shell"; the commands of
"Driving a running stack" run in "another shell", which first forgets the export `up` asks for, then
sets exactly the `export CELERY_BROKER_URL=...` line `up` printed and follows the README's link to
docs/celery.md's section of the same name, running its commands in order too.

The newcomer who forgets the export: their `conquer submit` goes to Celery's default broker,
redis://localhost:6379/0. On this machine a shared Redis really listens there, and a test must never
write to it (nor depend on no other session's worker listening there). So that one step runs in a
network namespace of its own (`unshare --net`), where 127.0.0.1:6379 is a private Redis with no
worker: the newcomer's command and environment are untouched — nothing is set to steer it — and the
shared server cannot be reached, let alone polluted. Afterwards that private Redis must hold nothing
of the job. (A private Redis on a free port would need CELERY_BROKER_URL set, which is precisely what
the newcomer forgot; checking the shared Redis for "keys this test could have made" would still write
to it, and would break the day another session runs an unprefixed worker there.)

It takes about 30 s on an idle 2-core VM, a minute or so while other tests run (`conquer compare` and
the Celery runs are most of it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conquer.exitcodes import ExitCode
from conquer.numbers import parse_count
from conquer.stack_cli import WORKER_ANSWER_S
from tasks import Job, check
from tests.conftest import CONQUER, ctrl_c, one_line
from tests.conquer.test_no_worker import START_UP_S, remote_control_keys
from tests.conquer.test_stack_cli import read_until, start
from tests.flower import flower_get
from tests.test_readme import EXAMPLE_ID, NEEDS_A_RUNNING_STACK, ROOT, Documented, blocks
from workers.celery.localstack import free_port

#: README commands the first hour does not run here, why, and what runs them.
SKIPPED = {
    "make run": "builds the .venv this test runs from, and compares at 1e8 for a minute: .ci/run runs it",
    "make test": "this test is part of it",
    "docker compose up -d --build --wait": "no container engine here: tests/compose/compose_up.py runs it",
    "docker compose --profile rabbitmq up -d --wait": "the same: tests/compose/compose_up.py runs it",
    "make freethreaded": (
        "builds a CPython once (minutes, as root): tests/test_make_freethreaded.py and .ci/run run it"
    ),
    "conquer compare sum 1e8 --executors serial,threads,processes --python .venv-ft/bin/python "
    "--python .venv/bin/python": (
        "needs the free-threaded build above: tests/conquer/test_interpreters.py runs it (at 1e6)"
    ),
    "conquer demo hosts": "needs root and builds network namespaces: tests/demos/test_hosts_demo.py runs it",
    "conquer compare sum 1e7 --executors celery --broker redis,rabbitmq": (
        "needs Debian's rabbitmq-server (skipped in one line where it is missing): "
        "tests/workers/test_embedded_rabbitmq.py runs it"
    ),
    "conquer bench --quick --series round-trip --out /tmp/conquer-bench": (
        "a benchmark (14 s idle, more under load), the same whoever runs it: tests/test_readme.py runs it"
    ),
}

#: The section of the documents the README's "Driving a running stack" links to.
LINKED = "docs/celery.md"


def in_order(document: str, section: str | None = None) -> list[Documented]:
    """The commands of `document`'s ```console and ```sh blocks (of `section` only, if given), in
    reading order."""
    text = (ROOT / document).read_text(encoding="utf-8")
    found = [
        documented
        for documented in blocks("console") + blocks("sh")
        if documented.document == document and section in (None, documented.section)
    ]
    start_at = text.index(f"## {section}") if section else 0
    return sorted(found, key=lambda documented: text.index(documented.command, start_at))


def newcomer_env(home: Path) -> dict[str, str]:
    """This environment without any Celery or conquer setting, with a fresh HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "CONQUER_"))}
    env.pop("REDIS_URL", None)  # the test suite's own variable: not something a newcomer has
    return {**env, "HOME": str(home)}


def run(command: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`command` (a documented `conquer ...` line) as the newcomer types it."""
    words = shlex.split(command)
    assert words[0] == "conquer", command
    return subprocess.run(
        [CONQUER, *words[1:]], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def succeeded(command: str, result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == ExitCode.OK, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def job_of(command: str) -> tuple[str, int]:
    """KIND and N of a `conquer run/compare/submit KIND N ...` line."""
    words = shlex.split(command)
    return words[2], parse_count(words[3])


def shows_a_verified_answer(job: tuple[str, int], stdout: str) -> None:
    """A job's report: the answer and the independent check — the same number, computed here again
    (n(n+1)/2 for sum, a sieve for primes) — and the verdict."""
    kind, n = job
    expected = n * (n + 1) // 2 if kind == "sum" else check(Job(kind, n, 1))
    assert re.search(rf"^  answer  {expected}$", stdout, re.M), stdout
    assert re.search(rf"^  check   {expected}  \(.+\)  ✓ verified$", stdout, re.M), stdout


def namespace_command() -> list[str]:
    """How to run a command in a network namespace of its own (as root, or mapped to root)."""
    return ["unshare", "--net", *(["--map-root-user"] if os.geteuid() else [])]


#: Run inside the namespace: bring its loopback up, start a Redis on 127.0.0.1:6379 (the default
#: broker's address), run the command, report what it did and the keys it left, stop the Redis.
IN_A_NAMESPACE = """
import json, subprocess, sys, time
from pathlib import Path
from tests.redis_server import RedisServer
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = RedisServer(Path(sys.argv[1]), 6379)
server.start()
try:
    began = time.monotonic()
    try:
        done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=60)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as timeout:
        code, stdout, stderr = None, str(timeout.stdout), str(timeout.stderr)
    took = time.monotonic() - began
    client = server.client()
    keys = sorted(key.decode() for key in client.keys("*"))
    client.close()
finally:
    server.stop()
print(json.dumps({"code": code, "stdout": stdout, "stderr": stderr, "took": took,
                  "keys": keys}))
"""


def on_a_localhost_of_its_own(command: str, env: dict[str, str], directory: Path) -> dict[str, Any]:
    """`command` with its environment as is, where localhost:6379 is a private Redis (see the module)."""
    words = shlex.split(command)
    report = subprocess.run(
        [*namespace_command(), sys.executable, "-c", IN_A_NAMESPACE, str(directory), CONQUER, *words[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(report.stdout)
    return result


@pytest.fixture
def namespace() -> None:
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip(
            "the forgetful newcomer's step needs unshare and ip (iproute2) for a localhost of its own"
        )
    probe = subprocess.run([*namespace_command(), "true"], capture_output=True, text=True, check=False)
    if probe.returncode:
        pytest.skip(f"no network namespace for the forgetful newcomer's step: {probe.stderr.strip()}")


def test_the_readme_links_driving_to_the_section_followed_here() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({LINKED}#driving-a-running-stack)" in readme
    assert set(SKIPPED) <= {documented.command for documented in in_order("README.md")}


@pytest.mark.usefixtures("embedded_redis", "namespace")
def test_a_newcomer_s_first_hour(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = newcomer_env(home)

    top = succeeded("conquer --help", run("conquer --help", env))
    for name in ("run", "compare", "up", "submit", "status", "result", "cancel", "workers", "demo"):
        assert re.search(rf"^  {name} ", top, re.M), f"`conquer --help` does not list {name}"

    up: subprocess.Popen[bytes] | None = None
    banner = ""
    drove = False
    other_shell: dict[str, str] = {}  # the other shell's environment, once it has `up`'s export
    try:
        for documented in in_order("README.md"):
            command = documented.command
            if command in SKIPPED:
                continue
            if command.startswith("conquer up"):
                # Flower's default port, 5555, may be taken on a shared machine: a free one instead.
                up = start(*shlex.split(command)[1:], "--flower-port", str(free_port()), env=env)
                banner = read_until(up, "Press Ctrl-C", 90)
                other_shell = exported(banner, env)
            elif documented.section == NEEDS_A_RUNNING_STACK:
                assert other_shell, f"{command}: the README drives a stack before it starts one"
                forgets_the_export(command, env, tmp_path / "localhost")
                drives_the_stack(command, other_shell, banner)
                drove = True
            else:
                out = succeeded(command, run(command, env))
                if command.startswith("conquer run "):
                    shows_a_verified_answer(job_of(command), out)
                elif command.startswith("conquer compare "):
                    assert "✓ verified" in out, out  # one verdict per row, none of them ✗
                    assert "✗" not in out, out
        # The lessons: "`conquer demo` lists the lessons", says the README under its example.
        listing = succeeded("conquer demo", run("conquer demo", env))
        assert re.search(r"^  bank-account ", listing, re.M), listing
    finally:
        stopped = ctrl_c(up, timeout=60)[1] if up is not None else b""
    assert up is not None, "the README never starts a stack"
    assert drove, "the README never drives the stack it started"
    assert up.returncode == ExitCode.OK, stopped
    assert b"stopped: every process of the stack has exited" in stopped
    # The other shell still has the export: its broker is gone, and a submit says so (exit 3).
    gone = run("conquer submit sum 10", other_shell)
    assert gone.returncode == ExitCode.BROKER_UNREACHABLE, gone.stderr
    assert "cannot reach Redis" in one_line(gone.stderr)


def exported(banner: str, env: dict[str, str]) -> dict[str, str]:
    """The other shell's environment after the `export NAME=VALUE` line the banner shows, and Flower
    checked with the login it shows."""
    export = re.search(r"^ *in another shell: +(export \S+)$", banner, re.M)
    assert export, banner
    name, _, value = shlex.split(export.group(1))[1].partition("=")
    flower = re.search(r"flower\s+(http://\S+)\s+user (\S+)\s+password (\S+)", banner)
    assert flower, banner
    assert flower_get(f"{flower.group(1)}/api/workers", flower.group(2, 3))[0] == 200
    return {**env, name: value}


def forgets_the_export(command: str, env: dict[str, str], directory: Path) -> None:
    """The other shell before the export: the job would go to localhost:6379, where no worker is.
    Exit 8 within the bound, one line naming the broker and the fix, and nothing left there."""
    directory.mkdir()
    forgot = on_a_localhost_of_its_own(command, env, directory)
    assert forgot["code"] == ExitCode.NO_WORKER, forgot
    line = one_line(forgot["stderr"])
    assert "no worker answered within" in line, line
    assert "at redis://localhost:6379/0 (the default: CELERY_BROKER_URL is not set); nothing was sent" in line
    assert (
        "start a stack with `conquer up`, then run here the `export CELERY_BROKER_URL=...` it prints" in line
    )
    assert forgot["took"] < WORKER_ANSWER_S + START_UP_S, forgot
    assert set(forgot["keys"]) <= remote_control_keys(), forgot


def drives_the_stack(first: str, env: dict[str, str], banner: str) -> None:
    """The README's command, then the linked section's, in order, in the shell with the export."""
    shows_a_verified_answer(job_of(first), succeeded(first, run(first, env)))
    job_id, job = "", ("", 0)
    for documented in in_order(LINKED, NEEDS_A_RUNNING_STACK):
        if documented.command == first:
            continue  # the README showed it too: run once
        words = [job_id if word == EXAMPLE_ID else word for word in shlex.split(documented.command)]
        command = shlex.join(words)
        out = succeeded(command, run(command, env))
        verb = words[1]
        if verb == "submit" and "--wait" in words:
            shows_a_verified_answer(job_of(command), out)
        elif verb == "submit":
            job_id, job = out.strip(), job_of(command)
            assert re.fullmatch(r"[0-9a-f]{16}", job_id), out
        elif verb == "status":
            assert re.match(rf"job {job_id}  (QUEUED|RUNNING|SUCCESS)  ", out), out
        elif verb == "result":
            shows_a_verified_answer(job, out)
        elif verb == "cancel":
            assert out == f"job {job_id} is already over (SUCCESS): nothing to cancel\n", out
        elif verb == "workers":
            names = re.findall(r"^ +(conquer\d-\S+@\S+)$", banner, re.M)
            assert sorted(re.findall(r"^(\S+@\S+)  prefork pool", out, re.M)) == sorted(names), out
        else:
            pytest.fail(f"{command}: the first hour does not check what its help says")
    cancels_a_running_job(env)


def cancels_a_running_job(env: dict[str, str]) -> None:
    """Beyond the documents' example (whose job is over by then): `cancel` as its help says, on a job
    still running — 40 chunks of 1 s on the stack's pool processes, 10 s of work or more."""
    job_id = succeeded("submit", run("conquer submit download 800 --chunks 40 --latency 0.05", env)).strip()
    out = succeeded("cancel", run(f"conquer cancel {job_id}", env))
    assert re.fullmatch(rf"job {job_id} cancelled: \d+ of 40 chunk\(s\) revoked\n", out), out
    result = run(f"conquer result {job_id} --timeout 0", env)
    assert result.returncode == ExitCode.CANCELLED, result.stderr
