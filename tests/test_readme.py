"""The documentation stays true: every command in README.md and docs/*.md is run, exactly as written.

- Every `$ conquer ...` line of a ```console block runs here, through the installed entry point, and
  must succeed — those under a heading (level 1 to 3) "Driving a running stack" against the session's
  Celery stack, every other one with no broker configured, as a reader would run them. A command that
  several documents show (the README's tour repeats the pages' examples) runs once.
- The ```sh block of "Driving a running stack" (docs/celery.md) runs here too, in order, against the
  session's stack, with the id `submit` printed standing in for the example id.
- Every other ```sh command (long, interactive, or needing an engine) is mapped, in RUN_ELSEWHERE, to
  the file that runs it and the words that file passes: the file must still contain that command — as
  the string literals of one call or list in Python, ending the call (no option added after them), or
  as a line of a shell script or Makefile. Where those words differ from the document's, the entry
  says why. A documented command with no entry fails, and so does an entry whose file no longer runs
  it, or whose command is no longer documented.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Stack, conquer

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The heading of the sections whose commands talk to a stack that is already running.
NEEDS_A_RUNNING_STACK = "Driving a running stack"

#: The example job id of the documents: a word a runner computes (the id its own submit printed).
EXAMPLE_ID = "5f0c2a9d1e7b4c36"

#: In a runner's words, a value the runner computes (a job id, a temporary directory): it matches
#: only a placeholder word of the document (EXAMPLE_ID) or a word of `RunsIn.words` written ANY.
ANY = "<computed>"

#: How the documents' programs appear in a Python runner: only their arguments are literals there
#: (`conquer("submit", ...)`, `stack("up", ...)` for `docker compose up ...`).
PROGRAMS = ("docker compose", "conquer", "make")


@dataclass(frozen=True)
class RunsIn:
    """Where a documented command runs: `path`, passing `words` (default: the command's own arguments
    after its program); `why` is required when they differ from the document's. `pending` names the
    change that will make `path` run it exactly: until then the check is expected to fail (strictly:
    once it passes, the mark must go)."""

    path: str
    words: tuple[str, ...] | None = None
    why: str = ""
    pending: str = ""


#: `make compose-test` runs the README's compose commands, each a string constant it executes as is.
COMPOSE_UP = RunsIn("tests/compose/compose_up.py")

RUN_ELSEWHERE = {
    "make run": RunsIn(".ci/run"),
    "make test": RunsIn(".ci/run"),
    "make test-ft": RunsIn(".ci/run"),
    "make freethreaded": RunsIn(
        "tests/test_make_freethreaded.py",
        ("-s", "freethreaded", ANY, ANY),
        why="the test runs it with the interpreters it gives (PYTHON=, FT_PYTHON=) for its bad-input "
        "paths; CI builds the interpreter with the script the target calls, for its exit code",
    ),
    "make bench": RunsIn(
        "tests/conquer/test_bench.py",
        ("bench", "--tiny", "--out", ANY),
        why="the full run takes 15 minutes and rewrites docs/bench: the test runs the Makefile's "
        "command, `conquer bench --out DIR`, at --tiny sizes into a temporary directory",
    ),
    "conquer compare sum 1e8 --executors serial,threads,processes --python .venv-ft/bin/python "
    "--python .venv/bin/python": RunsIn(
        "tests/conquer/test_interpreters.py",
        ("sum", "1e6", "--executors", "threads", "--repeats", "2", "--python", ANY, "--python", ANY),
        why="a table of both builds at 1e6, threads only (serial always runs): the test checks which "
        "build ran each row and that the GIL was off, not speed; it finds the venvs itself",
    ),
    "conquer demo responsive-terminal --frozen": RunsIn(
        "tests/demos/test_responsive_terminal.py",
        ("--frozen", "--items", "10", "--latency", "0.05"),
        why="interactive: the test runs the module `conquer demo` runs in a pseudo-terminal and presses "
        "its keys, downloading 10 short items instead of the default's slow ones",
    ),
    "conquer demo responsive-tk": RunsIn(
        "tests/demos/test_responsive_tk.py",
        ("--items", "30", "--latency", "0.05"),
        why="a window: the test runs the module under Xvfb and clicks its buttons, with short downloads",
    ),
    "conquer demo hosts": RunsIn("tests/demos/test_hosts_demo.py"),
    "conquer compare sum 1e7 --executors celery --broker redis,rabbitmq": RunsIn(
        "tests/workers/test_embedded_rabbitmq.py",
        (
            "compare",
            "sum",
            "1e5",
            "--executors",
            "celery",
            "--repeats",
            "2",
            "--json",
            "--broker",
            "redis,rabbitmq",
        ),
        why="at 1e5, twice each, as JSON: the test checks a row per broker, each exact, and that the node "
        "and both stacks are gone afterwards — not speed",
    ),
    "conquer bench --series recovery --out /tmp/recovery": RunsIn(
        "tests/conquer/test_bench_recovery.py",
        ("bench", "--series", "recovery", "--repeats", "1", "--out", ANY),
        why="5 rounds take a quarter of an hour: the test runs one, into a temporary directory",
    ),
    "conquer up --workers 2": RunsIn(
        "tests/conquer/test_stack_cli.py",
        ("up", "--workers", "2", "--flower-port", ANY),
        why="Flower's default port, 5555, may be taken on a shared machine: the test picks a free one",
    ),
    "docker compose up -d --build --wait": COMPOSE_UP,
    "docker compose run --rm secrets show": COMPOSE_UP,
    "docker compose run --rm cli conquer submit sum 100000000 --wait": COMPOSE_UP,
    "docker compose run --rm cli conquer workers": COMPOSE_UP,
    "docker compose up -d --scale worker=4 --wait": COMPOSE_UP,
    "docker compose up -d --wait": COMPOSE_UP,
    "docker compose --profile rabbitmq up -d --wait": COMPOSE_UP,
    "docker compose run --rm cli-rabbitmq conquer submit sum 100000000 --wait": COMPOSE_UP,
    "docker compose run --rm cli-rabbitmq conquer workers": COMPOSE_UP,
    "docker compose --profile rabbitmq down -v": COMPOSE_UP,
}


# --------------------------------------------------------------------------- reading the documents


@dataclass(frozen=True)
class Documented:
    document: str
    section: str
    command: str

    def __str__(self) -> str:
        return f"{self.document}: {self.command}"


def blocks(language: str) -> list[Documented]:
    """Every command line of the documents' ```language blocks, with the section (the nearest heading
    of level 1 to 3) it is in."""
    found = []
    for path in DOCUMENTS:
        heading = ""
        inside = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                inside = not inside and line == f"```{language}"
                continue
            if not inside and line.startswith(("# ", "## ", "### ")):
                heading = line.partition(" ")[2]
            elif inside and line.strip():
                command = line.removeprefix("$ ") if language == "console" else line.split("  #")[0].strip()
                found.append(Documented(path.relative_to(ROOT).as_posix(), heading, command))
    return found


CONSOLE = blocks("console")


def once_each(documented: list[Documented]) -> list[Documented]:
    """Each command once per kind of run (with the running stack or without), where it first appears:
    the README's tour repeats examples of the pages, and running them twice would prove nothing more."""
    first: dict[tuple[str, bool], Documented] = {}
    for item in documented:
        first.setdefault((item.command, item.section == NEEDS_A_RUNNING_STACK), item)
    return list(first.values())


CONSOLE_RUNS = once_each(CONSOLE)
SH = blocks("sh")
SH_RUN_HERE = [documented for documented in SH if documented.section == NEEDS_A_RUNNING_STACK]
SH_ELSEWHERE = [documented for documented in SH if documented.section != NEEDS_A_RUNNING_STACK]


# -------------------------------------------------------------------- what a runner file contains


def arguments_of(command: str) -> tuple[str, ...]:
    """The words of `command` after its program (`conquer`, `docker compose`, `make`)."""
    words = shlex.split(command)
    for program in PROGRAMS:
        size = len(program.split())
        if words[:size] == program.split():
            return tuple(words[size:])
    raise AssertionError(f"{command!r} starts with none of the known programs {PROGRAMS}")


def python_word_runs(source: str) -> list[list[str]]:
    """The positional words of every call, list and tuple of a Python source: a string literal as
    itself, anything else (a name, an f-string, `str(n)`) as ANY; `*("a", "b")` is unpacked."""
    runs = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            items = node.args
        elif isinstance(node, ast.List | ast.Tuple):
            items = node.elts
        else:
            continue
        words: list[str] = []
        for item in items:
            if isinstance(item, ast.Starred) and isinstance(item.value, ast.List | ast.Tuple):
                words += [literal(element) for element in item.value.elts]
            else:
                words.append(literal(item))
        runs.append(words)
    return runs


def literal(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ANY


def same(runner: str, expected: str) -> bool:
    return runner == expected or (runner == ANY and expected in (ANY, EXAMPLE_ID))


def ends_with(words: list[str], tail: tuple[str, ...]) -> bool:
    return len(words) >= len(tail) and all(map(same, words[len(words) - len(tail) :], tail))


def runs(path: Path, command: str, words: tuple[str, ...]) -> bool:
    """Does the file at `path` run `command`, passing `words` after its program?"""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        # Either the whole command as one string the runner executes (compose_up.py's constants), or
        # its words as the literal arguments of one call.
        whole = any(
            isinstance(node, ast.Constant) and node.value == command for node in ast.walk(ast.parse(text))
        )
        return whole or any(ends_with(run, words) for run in python_word_runs(text))
    # A shell script or a Makefile: a line (comments aside) that is the whole command.
    return any(shell_words(line) == shlex.split(command) for line in text.splitlines())


def shell_words(line: str) -> list[str]:
    """The words of a shell line, comments aside ([] for a line shlex cannot read on its own, such as
    one continued on the next)."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


# ------------------------------------------------------------------------------------------- tests


def test_console_blocks_hold_only_conquer_commands() -> None:
    assert len(CONSOLE) >= 20
    assert all(documented.command.startswith("conquer ") for documented in CONSOLE), CONSOLE


@pytest.mark.parametrize("documented", CONSOLE_RUNS, ids=str)
def test_each_console_command_runs(documented: Documented, request: pytest.FixtureRequest) -> None:
    if documented.section == NEEDS_A_RUNNING_STACK:
        stack: Stack = request.getfixturevalue("celery_stack")
        env = stack.env
    else:
        env = {key: "" for key in os.environ if key.startswith(("CELERY_", "CONQUER_"))}
    result = conquer(*shlex.split(documented.command)[1:], timeout=120, env=env)
    assert result.returncode == 0, f"{documented}\n{result.stdout}\n{result.stderr}"


def test_the_commands_driving_a_running_stack_run_in_order(celery_stack: Stack) -> None:
    """submit, then status, result and cancel of the job submit printed — the README's block as is."""
    assert [shlex.split(documented.command)[1] for documented in SH_RUN_HERE] == [
        "submit",
        "status",
        "result",
        "cancel",
    ]
    job_id = ""
    for documented in SH_RUN_HERE:
        words = [job_id if word == EXAMPLE_ID else word for word in shlex.split(documented.command)[1:]]
        result = conquer(*words, timeout=120, env=celery_stack.env)
        assert result.returncode == 0, f"{documented}\n{result.stdout}\n{result.stderr}"
        if not job_id:
            job_id = result.stdout.strip()
            assert re.fullmatch(r"[0-9a-f]{16}", job_id), result.stdout


@pytest.mark.parametrize("documented", SH_ELSEWHERE, ids=str)
def test_each_other_command_is_run_exactly_by_the_file_mapped_to_it(documented: Documented) -> None:
    where = RUN_ELSEWHERE.get(documented.command)
    assert where is not None, f"nothing runs {documented} (section {documented.section!r})"
    own = arguments_of(documented.command)
    words = where.words if where.words is not None else own
    assert words == own or where.why, f"{where.path} runs {documented} differently, and no entry says why"
    if where.pending and not runs(ROOT / where.path, documented.command, words):
        pytest.xfail(f"{where.pending}")
    assert runs(ROOT / where.path, documented.command, words), (
        f"{where.path} no longer runs {documented} (as {shlex.join(words)})"
    )
    assert not where.pending, f"{where.path} runs {documented} now: remove its pending mark"


def test_every_mapping_is_of_a_documented_command() -> None:
    documented = {documented.command for documented in SH_ELSEWHERE}
    assert sorted(set(RUN_ELSEWHERE) - documented) == []
