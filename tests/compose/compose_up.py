"""The documentation's `docker compose` story (docs/celery.md) on a real engine, from nothing to nothing left.

Runs the documented compose commands word for word (the constants below; `main` refuses to start if the
README and docs/ no longer say them), as a reader would with no `.env`: the stack comes up healthy with
passwords generated on its first start, shown by one command, found in no rendered config, log,
container environment or command line; Flower answers 401 to the old well-known login and to none,
200 to the generated one; every container's processes run as non-root uids (read from /proc inside
each one) and the secrets are owned by the image's unprivileged user; scaling to four workers leaves
the running one alone; a job through the `cli` service gives n(n+1)/2 exactly; `conquer workers` and
Flower list the four; scaled back to one, Flower forgets the others. Then `docker compose down` and
`up` again keep the same passwords, a `.env` with its own values wins (readers restarted, old
passwords refused), and `docker compose down -v` leaves no container, volume or network of the project.
Then the `rabbitmq` profile from nothing: RabbitMQ with the generated password and no published port,
its workers as non-root processes, a job through it exact, and `--profile rabbitmq down -v` leaving
nothing either.
Prints how long each step took.

It needs a Docker-compatible engine (`docker info` must answer, e.g. through DOCKER_HOST) and Compose
>= 2.24. The project's name, env file and Flower port come from the environment (see engine.py), so
it touches no other stack on the machine and ignores a developer's `.env`.

Exit codes: 0 every check passed; 1 a check failed (or something was left behind); 77 skipped — no
engine here, said in one line on stderr (77 is what automake and meson take for "skipped").

Usage::

    make compose-test
    python -m tests.compose.compose_up            # the same, from the checkout with the virtualenv active
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.compose.composefile import ROOT, SECRETS_DIR
from tests.compose.engine import Skip, Stack, docker, docker_exec, require_engine

SKIPPED = 77

#: The documented compose commands, run exactly as written.
UP = "docker compose up -d --build --wait"
SHOW = "docker compose run --rm secrets show"
SUBMIT = "docker compose run --rm cli conquer submit sum 100000000 --wait"
WORKERS = "docker compose run --rm cli conquer workers"
SCALE = "docker compose up -d --scale worker=4 --wait"
RESTART = "docker compose up -d --wait"
STOP = "docker compose down"
REMOVE = "docker compose down -v"
#: The second broker beside the first: RabbitMQ and its workers added to the running stack.
RABBITMQ_UP = "docker compose --profile rabbitmq up -d --wait"
RABBITMQ_SUBMIT = "docker compose run --rm cli-rabbitmq conquer submit sum 100000000 --wait"
RABBITMQ_WORKERS = "docker compose run --rm cli-rabbitmq conquer workers"
#: Compose acts only on the services of the profiles it is given: a plain `down -v` would leave
#: RabbitMQ, its workers and their volume behind (seen here).
RABBITMQ_REMOVE = "docker compose --profile rabbitmq down -v"
README_COMMANDS = (
    UP, SHOW, SUBMIT, WORKERS, SCALE, RESTART, STOP, REMOVE,
    RABBITMQ_UP, RABBITMQ_SUBMIT, RABBITMQ_WORKERS, RABBITMQ_REMOVE,
)  # fmt: skip

N = int(SUBMIT.split()[8])
SCALED = int(SCALE.split("worker=")[1].split(maxsplit=1)[0])
#: The generated passwords SHOW prints.
PASSWORDS = ["FLOWER_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD"]
#: The login every clone used to fall back to without a `.env`.
WELL_KNOWN = ("admin", "conquer-local-only")


def show(stack: Stack) -> dict[str, str]:
    """The stack's secrets, as SHOW prints them (`NAME=value` lines)."""
    lines = stack.read(SHOW).splitlines()
    shown = dict(line.split("=", 1) for line in lines)
    assert sorted(shown) == sorted([*PASSWORDS, "FLOWER_USER"]), f"`{SHOW}` printed {lines}"
    return shown


def login(shown: dict[str, str]) -> tuple[str, str]:
    return shown["FLOWER_USER"], shown["FLOWER_PASSWORD"]


def check_flower_login(stack: Stack, good: tuple[str, str], *refused: tuple[str, str] | None) -> None:
    for auth in refused:
        status, _ = stack.flower("/api/workers", auth)
        assert status == 401, f"Flower answered {status} to {auth and auth[0]!r} with a refused password"
    status, _ = stack.flower("/api/workers", good)
    assert status == 200, f"Flower answered {status} to its own login"


def check_secrets_are_kept_secret(stack: Stack, shown: dict[str, str]) -> None:
    """Generated passwords, nobody's but this stack's, in nothing compose or the engine shows."""
    for name in PASSWORDS:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", shown[name]), f"{name} is not a generated one"
        assert shown[name] != WELL_KNOWN[1]
    places = {
        "docker compose config": stack.compose("config"),
        "docker compose logs": stack.compose("logs", "--no-color"),
        "docker compose top": stack.compose("top"),
        **{f"docker inspect {c[:12]}": docker("inspect", c) for c in stack.containers()},
    }
    for place, text in places.items():
        for name in PASSWORDS:
            assert shown[name] not in text, f"{name} appears in `{place}`"
    print(f"    neither password in: {', '.join(places)}")
    # Written by the image's user (a root writer would leave uid 0), readable by its group only.
    listing = stack.compose(
        "exec", "-T", "flower", "sh", "-c", f"stat -c '%u:%g %a %n' {SECRETS_DIR} {SECRETS_DIR}/*"
    )
    modes = {line.split()[2]: tuple(line.split()[:2]) for line in listing.splitlines()}
    assert modes.pop(SECRETS_DIR) == ("10001:10001", "750"), listing
    assert sorted(Path(path).name for path in modes) == sorted(
        ["flower-password", "flower-user", "rabbitmq-password", "rabbitmq-url", "redis-password", "redis-url"]
    ), listing
    assert set(modes.values()) == {("10001:10001", "440")}, listing
    print(f"    {SECRETS_DIR}: 750, its files 440, all owned by 10001:10001")


def check_non_root(stack: Stack, services: set[str]) -> None:
    """Every process of every running container, as the kernel sees it: real, effective, saved and
    filesystem uid of each, read from /proc inside the container; and the engine's own view (`top`)."""
    # SERVICE # USER PID ...: a command with newlines (a `sh -c` script) continues on lines of its own.
    rows = [line.split() for line in stack.compose("top").splitlines()]
    users = {(row[0], row[2]) for row in rows if len(row) > 2 and row[0] in services and row[1].isdigit()}
    assert {service for service, _ in users} == services, users
    assert not [service for service, user in users if user in ("root", "0")], f"root in {users}"
    seen = []
    for container in stack.compose("ps", "--quiet").split():
        name = docker("inspect", "--format", "{{.Name}}", container).strip().lstrip("/")
        # grep exits 2 when a process (its own shell's, say) ends between the glob and the read.
        status = docker_exec(container, "grep -H '^Uid:' /proc/[0-9]*/status")
        uids = {int(uid) for line in status.splitlines() for uid in line.split()[1:]}
        assert len(status.splitlines()) >= 2, f"{name}: {status!r}"
        assert 0 not in uids, f"{name} runs a process as root: {status}"
        seen.append(f"{name} {sorted(uids)}")
    print("    uids: " + ", ".join(seen))


def check_rabbitmq(stack: Stack) -> None:
    """The profile, from nothing: RabbitMQ (password from the volume, nothing published) and workers
    that take chunks from it; a job sent through it is exact, and its workers are the ones that answer."""
    stack.run(RABBITMQ_UP)
    shown = show(stack)
    rabbitmq = stack.containers("rabbitmq")
    assert len(rabbitmq) == 1, rabbitmq
    assert not docker("port", rabbitmq[0]).strip(), "RabbitMQ publishes a port"
    output = stack.read(RABBITMQ_SUBMIT)
    answer = re.search(r"answer\s+(\d+)", output)
    assert answer, f"no answer through RabbitMQ in {output!r}"
    assert int(answer[1]) == N * (N + 1) // 2, f"answer {answer[1]} != n(n+1)/2 through RabbitMQ"
    print(f"    answer {answer[1]} = n(n+1)/2 through RabbitMQ")
    listed = re.findall(r"^(worker\S*@\S+)", stack.read(RABBITMQ_WORKERS), re.MULTILINE)
    assert listed, "no worker answered through RabbitMQ"
    assert all(name.startswith("worker-rabbitmq@") for name in listed), listed
    print(f"    `conquer workers` through RabbitMQ lists {', '.join(listed)}")
    check_non_root(stack, {"rabbitmq", "worker-rabbitmq"})
    # The generated password reached RabbitMQ: another one is refused at the AMQP handshake.
    wrong = f"amqp://conquer:{shown['REDIS_PASSWORD']}@rabbitmq:5672//"
    attempt = subprocess.run(
        ["docker", "compose", "exec", "-T", "worker-rabbitmq", "python", "-c",
         f"import kombu; kombu.Connection({wrong!r}, connect_timeout=5).connect()"],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert attempt.returncode != 0, "RabbitMQ let the conquer user in with another password"
    assert "ACCESS_REFUSED" in attempt.stderr, attempt.stderr[-500:]
    print("    RabbitMQ refuses the conquer user with another password; no port published")


def check(stack: Stack) -> None:
    with stack.step(f"{UP} (no .env)"):
        stack.run(UP)
    with stack.step(f"{SHOW}: generated, and secret"):
        generated = show(stack)
        check_secrets_are_kept_secret(stack, generated)
        check_flower_login(stack, login(generated), WELL_KNOWN, None)
        print(f"    Flower: 401 to {'/'.join(WELL_KNOWN)} and to no login, 200 to the generated one")
    with stack.step(SCALE):
        first = stack.containers("worker")
        before = [stack.started_at(container) for container in first]
        stack.run(SCALE)
        assert [stack.started_at(container) for container in first] == before, "scaling restarted a worker"
        assert len(stack.containers("worker")) == SCALED
        names = stack.wait_for_workers(SCALED, login(generated), within=60)
        print(f"    Flower lists {', '.join(names)}; the first worker was not restarted")
    with stack.step("every process of every container runs as a non-root uid"):
        check_non_root(stack, {"redis", "worker", "flower"})
    with stack.step(SUBMIT):
        output = stack.read(SUBMIT)
        answer = re.search(r"answer\s+(\d+)", output)
        expected = N * (N + 1) // 2
        assert answer, f"no answer in {output!r}"
        assert int(answer[1]) == expected, f"answer {answer[1]} != n(n+1)/2 = {expected}"
        wall = re.search(r"wall\s+(.*)", output)
        print(f"    answer {answer[1]} = n(n+1)/2; wall {wall[1] if wall else '?'}")
    with stack.step(WORKERS):
        listed = sorted(re.findall(r"^(worker@\S+)", stack.read(WORKERS), re.MULTILINE))
        assert listed == names, f"`conquer workers` lists {listed}, Flower {names}"
    with stack.step("docker compose up -d --scale worker=1 --wait: Flower forgets the removed workers"):
        stack.run("docker compose up -d --scale worker=1 --wait")
        # The dashboard drops a worker --purge_offline_workers=60 s (compose.yaml) after its last
        # heartbeat. (The API's /api/workers is a cache of replies that keeps old names.)
        names = stack.wait_for_workers(1, login(generated), within=120, dashboard=True)
        print(f"    workers: {', '.join(names)}")
    with stack.step(f"{STOP}, then {UP}: the same passwords"):
        stack.run(STOP)
        assert not stack.compose("ps", "--quiet").split(), "containers still run after `down`"
        stack.run(UP)
        assert show(stack) == generated, "a restart changed the passwords"
        check_flower_login(stack, login(generated), WELL_KNOWN)
    with tempfile.TemporaryDirectory() as directory:
        dot_env = Path(directory) / ".env"
        mine = {"REDIS_PASSWORD": secrets.token_urlsafe(16), "FLOWER_PASSWORD": secrets.token_urlsafe(16)}
        dot_env.write_text("".join(f"{name}={value}\n" for name, value in mine.items()))
        with stack.step(f"a .env with its own passwords, {RESTART}: they win"):
            stack.use_env_file(dot_env)
            stack.run(RESTART)
            shown = show(stack)
            assert (shown["REDIS_PASSWORD"], shown["FLOWER_PASSWORD"]) == tuple(mine.values()), shown
            check_flower_login(stack, login(shown), login(generated))
            # Redis and the worker were restarted on the new password: the worker still answers.
            assert re.search(r"^worker@", stack.read(WORKERS), re.MULTILINE)
            print("    Flower: 401 to the generated password, 200 to the .env's; the worker answers")


class Leftovers(RuntimeError):
    """What a story's removal command left behind."""


def story(stack: Stack, checks: Callable[[Stack], None], remove: str, name: str = "") -> BaseException | None:
    """Run `checks` (in a step called `name`, if given), then `remove`, whatever happened; return what
    failed: a check, or Leftovers when `remove` did not remove everything of the project."""
    failure: BaseException | None = None
    try:
        if name:
            with stack.step(name):
                checks(stack)
        else:
            checks(stack)
    except BaseException as error:  # report it after cleaning up, whatever it was
        failure = error
        stack.diagnose()
    finally:
        stack.use_env_file(None)
        with stack.step(remove):
            stack.run(remove, check=False)
            left = stack.leftovers()
            if left:  # what `remove` missed (a failed step's `run` container, say): say so, then clean
                profiles = ("--profile", "cli", "--profile", "rabbitmq")
                stack.compose(*profiles, "down", "--volumes", "--remove-orphans", check=False)
    if left:
        print(f"left behind by `{remove}`: {', '.join(left)}")
    return failure or (Leftovers(f"`{remove}` left {', '.join(left)}") if left else None)


def documentation() -> str:
    """README.md and docs/*.md, where the compose story is told."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def main() -> int:
    documented = documentation()
    drifted = [command for command in README_COMMANDS if command not in documented]
    if drifted:
        print(f"compose-test: the docs no longer say {drifted}: update README_COMMANDS", file=sys.stderr)
        return 1
    try:
        require_engine()
    except Skip as reason:
        print(f"compose-test skipped: {reason}.", file=sys.stderr)
        return SKIPPED
    stack = Stack()
    failure = story(stack, check, REMOVE)
    if failure is None:  # the profile's story, on a clean slate again
        failure = story(stack, check_rabbitmq, RABBITMQ_REMOVE, f"{RABBITMQ_UP} (from nothing)")
    if stack.outputs_lost:
        print(f"outputs lost by the engine and asked again: {stack.outputs_lost}")
    print("timings: " + ", ".join(f"{name}: {seconds:.1f} s" for name, seconds in stack.timings.items()))
    if failure is not None:
        if not isinstance(failure, AssertionError | RuntimeError):  # not a check's: where it broke
            traceback.print_exception(failure)
        print(f"compose-test FAILED: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
