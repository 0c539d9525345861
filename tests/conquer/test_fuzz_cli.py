"""Bad input, fuzzed: whatever is wrong with a command line or a setting, `conquer` exits 2 with one
line on stderr naming what is wrong, nothing on stdout and no traceback — before it contacts the broker.

Hypothesis builds command lines that are valid but for one fault — a count, a number of seconds, a
choice, a job id or a broker URL that cannot work, a missing, unknown or extra argument — for every
command that takes arguments. The broker they are pointed at is a private Redis whose own counters
(connections received, commands processed) are read before and after every example: a refusal that
contacted the broker first fails, and so does a "fault" the CLI accepts (it would run or connect).

Each example runs in this process through click's CliRunner on `conquer.cli.cli`: the same
`ConquerGroup.main` the console script calls (`conquer.cli.main` adds only prog_name), in milliseconds
instead of the 0.1-0.3 s a new interpreter takes. `test_the_console_script_refuses_exactly_as_in_process`
runs a few examples of each command as real processes and compares exit status, stdout and stderr.
Examples are derandomized and no example database is kept, so every run (CI's too) tries the same ones.
The hand-picked bad inputs of tests/conquer/test_cli.py and test_stack_cli.py are not repeated here.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import string
import subprocess
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import workers.celery.settings
from conquer.bench import SERIES
from conquer.cli import cli
from conquer.exitcodes import ExitCode
from demos import DEMOS
from tasks.job import CHUNKS_MAX
from tasks.kinds import KINDS
from tests.conftest import CONQUER, conquer
from tests.redis_server import RedisServer, redis_server
from workers import EXECUTORS, IPCS, START_METHODS, WORKERS_MAX
from workers.celery.brokers import BROKERS
from workers.celery.settings import ENV_BACKEND, ENV_BROKER, POOLS

#: Examples per command. Each costs a few milliseconds; all commands together take seconds.
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -------------------------------------------------------------------------------- the witness


@dataclass
class Witness:
    """What a private Redis received, from its own counters. Reading them is one command (INFO),
    which Redis counts once it has answered: between two readings, exactly one command is ours."""

    server: RedisServer
    connection: redis.Redis

    def counters(self) -> tuple[int, int]:
        stats = self.connection.info("stats")
        return int(stats["total_connections_received"]), int(stats["total_commands_processed"])

    @contextmanager
    def untouched(self, what: str) -> Iterator[None]:
        connections, commands = self.counters()
        yield
        after_connections, after_commands = self.counters()
        new = (after_connections - connections, after_commands - commands - 1)
        assert new == (0, 0), f"{what}: the broker got {new[0]} connection(s) and {new[1]} command(s)"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witness]:
    with redis_server(tmp_path_factory.mktemp("fuzz-broker")) as server:
        connection = server.client()
        try:
            yield Witness(server, connection)
        finally:
            connection.close()


def base_env(broker: Witness) -> dict[str, str]:
    """Every Celery and conquer variable of this process blanked (blank is unset, to the settings),
    and the witnessed Redis as the broker."""
    blank = {key: "" for key in os.environ if key.startswith(("CELERY_", "CONQUER_"))}
    return {**blank, ENV_BROKER: broker.server.url}


# ---------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Case:
    """A command line (and environment) with one thing wrong."""

    argv: tuple[str, ...]
    fault: str
    #: The one line must contain one of these (lower case): it names what is wrong.
    hints: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    #: Text that must never be printed (parts of a password in a refused URL).
    secrets: tuple[str, ...] = ()

    def __str__(self) -> str:
        env = " ".join(f"{name}={value!r}" for name, value in self.env)
        return f"[{self.fault}] {env} conquer {shlex.join(self.argv)}"


@dataclass(frozen=True)
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    #: An exception that escaped the CLI (never expected: it turns every error into an exit status).
    escaped: BaseException | None = None


RUNNER = CliRunner()


def in_process(case: Case, broker: Witness) -> Outcome:
    # Settings are read once per process; each example brings its own environment.
    workers.celery.settings.settings.cache_clear()
    try:
        result = RUNNER.invoke(
            cli, list(case.argv), env={**base_env(broker), **dict(case.env)}, prog_name="conquer"
        )
    finally:
        workers.celery.settings.settings.cache_clear()
    escaped = None if isinstance(result.exception, SystemExit | None) else result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, escaped)


def as_a_process(case: Case, broker: Witness) -> Outcome:
    result = conquer(*case.argv, env={**base_env(broker), **dict(case.env)})
    return Outcome(result.returncode, result.stdout, result.stderr)


def assert_refused(case: Case, outcome: Outcome) -> None:
    shown = f"{case}\nexit {outcome.code}, stdout {outcome.stdout!r}, stderr {outcome.stderr!r}"
    assert outcome.escaped is None, f"{shown}\nescaped: {outcome.escaped!r}"
    assert outcome.code == ExitCode.USAGE, shown
    assert outcome.stdout == "", shown
    assert "Traceback" not in outcome.stderr, shown
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("conquer"), shown
    assert any(hint in lines[0].lower() for hint in case.hints), f"names none of {case.hints}: {shown}"
    for secret in case.secrets:
        assert secret not in outcome.stderr, f"printed {secret!r}: {shown}"


# ------------------------------------------------------------------------------- what is wrong

#: Characters a command line or environment can carry: any but NUL (argv and environment strings end
#: there) and lone surrogates (not characters; undecodable bytes have their own test below).
CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
HEX = "0123456789abcdef"
#: Every character any spelling of a count can hold (`1_000`, `1e3`, `+10`, `1.0e3`).
COUNT_CHARACTERS = frozenset("0123456789_.eE+-")


def texts(max_size: int = 12, *, positional: bool = False) -> st.SearchStrategy[str]:
    found = st.text(CHARACTERS, max_size=max_size)
    # A word starting with '-' is an option to click, not a positional value (the unknown-option
    # fault covers those); an option's value may start with anything.
    return found.filter(lambda word: not word.startswith("-")) if positional else found


def spellings(number: int) -> list[str]:
    """Ways to write `number` that the CLI accepts: 1000, 1_000, 1e3."""
    forms = [str(number), f"{number:_}"]
    digits = str(abs(number))
    zeros = len(digits) - len(digits.rstrip("0"))
    if number and zeros:
        forms.append(f"{number // 10**zeros}e{zeros}")
    return forms


def spelled(numbers: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return numbers.flatmap(lambda number: st.sampled_from(spellings(number)))


def not_a_count(*, positional: bool) -> st.SearchStrategy[str]:
    """Text that no spelling of a whole number matches, by construction (never by asking the parser)."""
    digits = st.integers(0, 10**6)
    return st.one_of(
        # empty, or a character no spelling of a count holds: letters, other scripts' digits, inner
        # spaces, nan, inf, 0x1f...
        texts(positional=positional).filter(
            lambda text: not text.strip() or not set(text.strip()) <= COUNT_CHARACTERS
        ),
        st.builds("{}.{}".format, digits, st.integers(1, 10**6)),  # a fraction
        st.builds("{}e-{}".format, st.integers(1, 9), st.integers(1, 30)),  # a fraction, scientific
        st.builds(
            lambda form, a, b: form.format(a, b),
            st.sampled_from(["_{}", "{}_", "{}__{}", "{}_e{}", "{}e{}_"]),
            digits,
            digits,
        ),  # underscores where Python's int() refuses them
        st.builds("1e{}".format, st.integers(30, 10**12)),  # far too many digits to expand
    )


def bad_count(low: int, high: int, *, positional: bool = False) -> st.SearchStrategy[str]:
    """Not a count, or a count outside low..high (a negative one too, even as an argument, where click
    alone would take `-5` for an option)."""
    below = st.integers(min_value=-(10**12), max_value=low - 1)
    return st.one_of(
        not_a_count(positional=positional),
        spelled(below),
        spelled(st.integers(high + 1, max(high * 10**6, 10**12))),
    )


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def bad_seconds(low: float, high: float) -> st.SearchStrategy[str]:
    """Not a number, nan, or a number of seconds outside low..high."""
    return st.one_of(
        st.floats(max_value=low, exclude_max=True).map(repr),  # -inf included
        st.floats(min_value=high, exclude_min=True).map(repr),  # inf included
        st.just(repr(math.nan)),
        st.sampled_from(["nan", "NaN", "-nan", "inf", "-Infinity"]),
        texts().filter(lambda text: not is_float(text)),
    )


def bad_int(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(
        texts().filter(lambda text: not is_int(text)),
        st.integers(max_value=low - 1).map(str),
        st.integers(min_value=high + 1).map(str),
    )


def not_one_of(choices: Collection[str], *, positional: bool = False) -> st.SearchStrategy[str]:
    return texts(positional=positional).filter(lambda text: text not in choices)


def is_job_id(text: str) -> bool:
    """The README's job id: 16 hex digits (case and surrounding blanks do not matter)."""
    return re.fullmatch(r"[0-9a-fA-F]{16}", text.strip()) is not None


def not_a_job_id() -> st.SearchStrategy[str]:
    def one_wrong(digits: str, at: int, wrong: str) -> str:
        return digits[:at] + wrong + digits[at:]

    return st.one_of(
        texts(max_size=20, positional=True).filter(lambda text: not is_job_id(text)),
        st.text(HEX, max_size=15) | st.text(HEX, min_size=17, max_size=40),  # hex, another length
        st.builds(  # 16 characters, one of them no hex digit (a look-alike, a letter, a blank...)
            one_wrong,
            st.text(HEX, min_size=15, max_size=15),
            st.integers(1, 15),  # not first: a leading '-' would be an option
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + string.hexdigits),
        ),
    )


def job_ids() -> st.SearchStrategy[str]:
    """Valid ids, as users may paste them."""
    return st.builds(
        lambda digits, upper, pad: pad + (digits.upper() if upper else digits) + pad,
        st.text(HEX, min_size=16, max_size=16),
        st.booleans(),
        st.sampled_from(["", " "]),
    )


#: A part of a password, with a capital letter and a digit: such a part can be printed only by leaking it
#: — a job id (lower-case hex), a port or a count (digits) or a word of a message cannot spell it (an
#: all-digit "0000000000" once matched the fuzzed job id "0000000000000000").
SECRET_PART = st.text(string.ascii_letters + string.digits, min_size=10, max_size=10).filter(
    lambda part: any(c.isupper() for c in part) and any(c.isdigit() for c in part)
)


@st.composite
def foreign_url(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A URL Settings refuses (no Redis scheme), holding a password written raw, special characters
    and all: (url, the password's parts that must never be printed)."""
    first, last = draw(SECRET_PART), draw(SECRET_PART)
    middle = draw(st.text(CHARACTERS, max_size=3))
    scheme = draw(st.sampled_from(["amqp", "http", "sqs", "REDIS", "redis+tcp", "unix"]) | texts(max_size=8))
    url = draw(
        st.sampled_from(
            [f"{scheme}://user:{first}{middle}{last}@host:5672//", f"{scheme}:{first}{middle}{last}@host"]
        )
    )
    if url.strip().partition("://")[0] in BROKERS:
        url = "amqp://" + url
    return url, (first, last)


@st.composite
def malformed_redis_url(draw: st.DrawFn, port: int) -> str:
    """A URL with a Redis scheme that no client can use, pointed at the witnessed Redis wherever it
    has a host: if it were used, the witness would see it."""
    here = f"127.0.0.1:{port}"
    word = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
    return draw(
        st.one_of(
            st.builds(f"redis://{here}/{{}}".format, word),  # database not a number
            st.builds(f"redis://{here}/0/{{}}".format, st.integers(0, 15)),
            st.builds(f"redis://{here}/0?socket_timeout={{}}".format, word),
            st.builds(f"redis://{here}/0?x_{{}}=1".format, word),  # no such option
            st.builds("redis://127.0.0.1:{}/0".format, word | st.integers(65536, 10**9).map(str)),
            st.sampled_from(["redis://[::1/0", "redis", "rediss", "redis+socket", "redis:/127.0.0.1"]),
            st.builds("redis+socket:///tmp/none.sock?db={}".format, word),
        )
    )


# ------------------------------------------------------------------------------ command lines


@dataclass
class Line:
    """A valid command line under construction: positionals, options (name -> value tokens, none for
    a flag) and the environment; `tail` goes last (an option missing its value)."""

    command: str
    positionals: list[str]
    options: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    extra: list[list[str]] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    kind: str = "sum"
    n: int = 1

    def case(
        self, draw: st.DrawFn, fault: str, hints: tuple[str, ...], secrets: tuple[str, ...] = ()
    ) -> Case:
        groups = [[name, *values] for name, values in self.options.items()] + self.extra
        groups = draw(st.permutations(groups))
        at = draw(st.integers(0, len(groups)))
        words = [word for group in groups[:at] for word in group]
        words += self.positionals + [word for group in groups[at:] for word in group] + self.tail
        return Case((self.command, *words), fault, hints, tuple(self.env.items()), secrets)


Fault = Callable[[st.DrawFn, Line], Case]


def command_params(name: str) -> list[click.Parameter]:
    command = cli.commands[name]
    return list(command.params)


def option_names(name: str) -> set[str]:
    return {opt for param in command_params(name) for opt in (*param.opts, *param.secondary_opts)} | {
        "--help",
        "-h",
    }


def aliases(command: str, option: str) -> tuple[str, ...]:
    """`option` and its other names (`--chunks`, `-k`)."""
    return next((tuple(p.opts) for p in command_params(command) if option in p.opts), (option,))


def in_range(option: str, values: st.SearchStrategy[str], *hints: str) -> Fault:
    """The fault: `option` gets one of `values` (each invalid), under no other name."""

    def fault(draw: st.DrawFn, line: Line) -> Case:
        for name in aliases(line.command, option):
            line.options.pop(name, None)
        line.options[option] = [draw(values)]
        return line.case(draw, f"{option} invalid", hints or (option,))

    return fault


def positional(index: int, values: Callable[[Line], st.SearchStrategy[str]], *hints: str) -> Fault:
    def fault(draw: st.DrawFn, line: Line) -> Case:
        line.positionals[index] = draw(values(line))
        return line.case(draw, f"argument {index + 1} invalid", hints)

    return fault


def unknown_option(draw: st.DrawFn, line: Line) -> Case:
    known = option_names(line.command)
    # Long, or one letter: `-vx` would be -v and -x, and `-kx` the option -k with the value x.
    words = st.from_regex(r"--[a-z][a-z0-9-]{1,12}|-[a-zA-Z]", fullmatch=True)
    name = draw(words.filter(lambda word: word not in known))
    line.extra.append([name])
    return line.case(draw, "unknown option", ("no such option",))


def extra_argument(draw: st.DrawFn, line: Line) -> Case:
    line.positionals.append(draw(texts(positional=True)))
    return line.case(draw, "extra argument", ("unexpected extra argument",))


def missing_argument(draw: st.DrawFn, line: Line) -> Case:
    keep = draw(st.integers(0, len(line.positionals) - 1))
    line.positionals = line.positionals[:keep]
    return line.case(draw, "missing argument", ("missing argument",))


def missing_value(draw: st.DrawFn, line: Line) -> Case:
    takes_value = sorted(
        opt
        for param in command_params(line.command)
        if isinstance(param, click.Option) and not param.is_flag
        for opt in param.opts
    )
    line.tail = [draw(st.sampled_from(takes_value))]
    return line.case(draw, "option without its value", ("requires an argument",))


def flag_with_value(draw: st.DrawFn, line: Line) -> Case:
    flags = sorted(
        opt
        for param in command_params(line.command)
        if isinstance(param, click.Option) and param.is_flag
        for opt in param.opts
        if opt.startswith("--") and opt != "--help"
    )
    line.extra.append([f"{draw(st.sampled_from(flags))}={draw(texts(max_size=4))}"])
    return line.case(draw, "a flag given a value", ("does not take a value",))


def settings_fault(port: int) -> Fault:
    """An environment variable that cannot work."""

    def fault(draw: st.DrawFn, line: Line) -> Case:
        variable = draw(
            st.sampled_from(
                [
                    ENV_BROKER,
                    ENV_BACKEND,
                    "CONQUER_WORKER_POOL",
                    "CONQUER_WORKER_CONCURRENCY",
                    "CONQUER_VISIBILITY_TIMEOUT",
                    "CONQUER_CHUNK_TIME_LIMIT",
                    "CONQUER_RESULT_EXPIRES",
                    "CONQUER_KEY_PREFIX",
                    "CONQUER_TASK_EVENTS",
                ]
            )
        )
        secrets: tuple[str, ...] = ()
        nonblank = texts().filter(lambda text: bool(text.strip()))
        if variable in (ENV_BROKER, ENV_BACKEND):
            if draw(st.booleans()):
                value = draw(malformed_redis_url(port))
            else:
                value, secrets = draw(foreign_url())
        elif variable == "CONQUER_WORKER_POOL":
            value = draw(nonblank.filter(lambda text: text.strip() not in POOLS))
        elif variable == "CONQUER_KEY_PREFIX":
            value = draw(nonblank.filter(lambda text: not re.fullmatch(r"[\w.:-]*", text.strip())))
        elif variable == "CONQUER_TASK_EVENTS":
            accepted = ("1", "true", "yes", "on", "0", "false", "no", "off")
            value = draw(nonblank.filter(lambda text: text.strip().lower() not in accepted))
        else:
            # Too small (the hard time limit is the chunk limit + 3 s, below the visibility timeout),
            # or not a whole number.
            limits = {
                "CONQUER_WORKER_CONCURRENCY": st.integers(max_value=0),
                "CONQUER_VISIBILITY_TIMEOUT": st.integers(max_value=18),
                "CONQUER_CHUNK_TIME_LIMIT": st.integers(max_value=0) | st.integers(min_value=17),
                "CONQUER_RESULT_EXPIRES": st.integers(max_value=59),
            }
            value = draw(limits[variable].map(str) | nonblank.filter(lambda text: not is_int(text)))
        line.env[variable] = value
        return line.case(draw, f"{variable} cannot work", (variable.lower(),), secrets)

    return fault


def draw_fault(draw: st.DrawFn, line: Line, faults: list[Fault], setting: Fault | None = None) -> Case:
    """One of `faults`; with `setting`, that one (the command's setting that cannot work)."""
    return (setting or draw(st.sampled_from(faults)))(draw, line)


# ------------------------------------------------------------------------- each command's lines


def job_line(draw: st.DrawFn, command: str, *, n_max: int = 1000) -> Line:
    kind = draw(st.sampled_from(list(KINDS)))
    n = draw(st.integers(1, n_max))
    line = Line(command, [kind, draw(st.sampled_from(spellings(n)))], kind=kind, n=n)
    if draw(st.booleans()):
        line.options[draw(st.sampled_from(["--chunks", "-k"]))] = [str(draw(st.integers(1, min(n, 64))))]
    # Always short: a download job's default 0.1 s per item can exceed a chunk's time limit (`submit`
    # refuses that), and should a fault slip through, the job takes milliseconds.
    line.options["--latency"] = [repr(draw(st.floats(0, 0.001)))]
    if draw(st.booleans()):
        line.options["--json"] = []
    return line


def count_faults(line: Line) -> list[Fault]:
    n_max = KINDS[line.kind].n_max
    return [
        positional(0, lambda _: not_one_of(KINDS, positional=True), "'kind'"),
        positional(1, lambda _: bad_count(1, n_max, positional=True), "'n'", "n must"),
        in_range("--chunks", bad_count(1, min(line.n, CHUNKS_MAX)), "chunks"),
        in_range("--latency", bad_seconds(0, 10), "latency"),
    ]


STRUCTURAL: list[Fault] = [unknown_option, extra_argument, missing_argument, missing_value, flag_with_value]
#: The same, for a command that takes no positional argument.
NO_POSITIONALS: list[Fault] = [f for f in STRUCTURAL if f is not missing_argument]


@st.composite
def run_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    line = job_line(draw, "run")
    in_host = [
        name for name, spec in EXECUTORS.items() if name != "celery" and line.kind in (spec.kinds or KINDS)
    ]
    executor = draw(st.sampled_from(in_host))
    line.options["--on"] = [executor]
    if executor == "processes":
        if draw(st.booleans()):
            line.options["--ipc"] = [draw(st.sampled_from(IPCS))]
        if draw(st.booleans()):
            line.options["--start-method"] = [draw(st.sampled_from(START_METHODS))]
    if draw(st.booleans()):
        line.options["--workers"] = [str(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        line.options["--fail-at"] = [str(draw(st.integers(1, line.n)))]
    if draw(st.booleans()):
        line.options["-v"] = []

    def workers_on_a_running_stack(draw: st.DrawFn, line: Line) -> Case:
        # The witnessed broker is configured: its workers, whoever they are, would take the job.
        line.options["--on"] = ["celery"]
        line.options.pop("--ipc", None)
        line.options.pop("--start-method", None)
        line.options.pop("-w", None)
        line.options["--workers"] = [str(draw(st.integers(1, 4)))]
        return line.case(draw, "--workers with a broker set", ("--workers does not apply",))

    def on_celery(draw: st.DrawFn, line: Line) -> Case:
        line.options["--on"] = ["celery"]
        line.options.pop("--ipc", None)
        line.options.pop("--start-method", None)
        return settings_fault(port)(draw, line)

    def asyncio_cpu(draw: st.DrawFn, line: Line) -> Case:
        line.positionals[0] = draw(st.sampled_from([k for k, spec in KINDS.items() if not spec.io_bound]))
        line.options["--on"] = ["asyncio"]
        line.options.pop("--ipc", None)
        line.options.pop("--start-method", None)
        return line.case(draw, "asyncio for a CPU-bound job", ("asyncio runs only",))

    def processes_option_elsewhere(draw: st.DrawFn, line: Line) -> Case:
        line.options["--on"] = [draw(st.sampled_from([name for name in in_host if name != "processes"]))]
        option = draw(st.sampled_from(["--ipc", "--start-method"]))
        line.options[option] = [draw(st.sampled_from(IPCS if option == "--ipc" else START_METHODS))]
        line.options.pop("--start-method" if option == "--ipc" else "--ipc", None)
        return line.case(draw, f"{option} without processes", (f"{option} applies",))

    def ipc_or_method(draw: st.DrawFn, line: Line) -> Case:
        line.options["--on"] = ["processes"]
        option = draw(st.sampled_from(["--ipc", "--start-method"]))
        line.options[option] = [draw(not_one_of(IPCS if option == "--ipc" else START_METHODS))]
        return line.case(draw, f"{option} invalid", (option,))

    faults = [
        *count_faults(line),
        in_range("--on", not_one_of(EXECUTORS), "executor"),
        in_range("--workers", bad_count(1, WORKERS_MAX), "workers"),
        in_range("--fail-at", bad_count(1, line.n), "fail-at"),
        ipc_or_method,
        asyncio_cpu,
        processes_option_elsewhere,
        workers_on_a_running_stack,
        on_celery,
        *STRUCTURAL,
    ]
    return draw_fault(draw, line, faults, on_celery if setting else None)


@st.composite
def compare_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    line = job_line(draw, "compare")
    in_host = [name for name in EXECUTORS if name != "celery"]
    line.options["--executors"] = [",".join(draw(st.lists(st.sampled_from(in_host), min_size=1, max_size=3)))]
    if draw(st.booleans()):
        line.options["--repeats"] = [str(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        line.options["--start-method"] = [draw(st.sampled_from([*START_METHODS, "all"]))]
    if draw(st.booleans()):
        line.options["--workers"] = [str(draw(st.integers(1, 4)))]

    def with_celery(draw: st.DrawFn, line: Line) -> Case:
        if draw(st.booleans()):
            line.options["--executors"] = ["serial,celery"]
        else:
            del line.options["--executors"]  # all of them, Celery included
        return settings_fault(port)(draw, line)

    def unknown_executor(draw: st.DrawFn, line: Line) -> Case:
        names = draw(st.lists(st.sampled_from(list(EXECUTORS)), max_size=3))
        unknown = draw(texts().filter(lambda text: "," not in text and text.strip() not in EXECUTORS))
        listed = ",".join(draw(st.permutations([*names, unknown])))
        line.options["--executors"] = [listed or ","]
        return line.case(draw, "an unknown executor", ("unknown executor",))

    faults = [
        *count_faults(line),
        in_range("--workers", bad_count(1, WORKERS_MAX), "workers"),
        in_range("--repeats", bad_int(1, 100), "repeats"),
        in_range("--start-method", not_one_of((*START_METHODS, "all")), "start-method"),
        unknown_executor,
        with_celery,
        *STRUCTURAL,
    ]
    return draw_fault(draw, line, faults, with_celery if setting else None)


@st.composite
def submit_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    line = job_line(draw, "submit")
    if draw(st.booleans()):
        line.options["--fail-at"] = [str(draw(st.integers(1, line.n)))]
    if draw(st.booleans()):
        line.options["--wait"] = []
        line.options["--timeout"] = [repr(draw(st.floats(0, 1)))]

    def chunks_too_long(draw: st.DrawFn, line: Line) -> Case:
        # Items per chunk × latency beyond the default chunk time limit, 15 s.
        per_chunk = draw(st.integers(2, 100))
        chunks = draw(st.integers(1, 10))
        line.positionals[:2] = ["download", str(per_chunk * chunks)]
        line.options["--chunks"] = [str(chunks)]
        line.options.pop("-k", None)
        line.options.pop("--fail-at", None)
        line.options["--latency"] = [repr(draw(st.floats(15.2 / per_chunk, 10)))]  # clear of rounding
        return line.case(draw, "chunks over the time limit", ("over the chunk time limit",))

    def timeout_without_wait(draw: st.DrawFn, line: Line) -> Case:
        line.options.pop("--wait", None)
        line.options["--timeout"] = [repr(draw(st.floats(0, 7 * 24 * 3600)))]
        return line.case(draw, "--timeout without --wait", ("--timeout applies only with --wait",))

    faults = [
        *count_faults(line),
        in_range("--fail-at", bad_count(1, line.n), "fail-at"),
        in_range("--timeout", bad_seconds(0, 7 * 24 * 3600), "timeout"),
        timeout_without_wait,
        chunks_too_long,
        settings_fault(port),
        *STRUCTURAL,
    ]
    return draw_fault(draw, line, faults, settings_fault(port) if setting else None)


@st.composite
def job_id_cases(draw: st.DrawFn, port: int, command: str, setting: bool = False) -> Case:
    line = Line(command, [draw(job_ids())])
    if command != "cancel" and draw(st.booleans()):
        line.options["--json"] = []
    if command == "result" and draw(st.booleans()):
        line.options["--timeout"] = [repr(draw(st.floats(0, 1)))]
    faults: list[Fault] = [
        positional(0, lambda _: not_a_job_id(), "job id", "job_id"),
        settings_fault(port),
        unknown_option,
        extra_argument,
        missing_argument,
    ]
    if command == "result":
        faults += [in_range("--timeout", bad_seconds(0, 7 * 24 * 3600), "timeout"), missing_value]
    if command != "cancel":
        faults.append(flag_with_value)
    return draw_fault(draw, line, faults, settings_fault(port) if setting else None)


@st.composite
def workers_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    line = Line("workers", [])
    if draw(st.booleans()):
        line.options["--timeout"] = [repr(draw(st.floats(0.1, 1)))]
    faults = [
        in_range("--timeout", bad_seconds(0.1, 60), "timeout"),
        settings_fault(port),
        *NO_POSITIONALS,
    ]
    return draw_fault(draw, line, faults, settings_fault(port) if setting else None)


@st.composite
def up_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    line = Line("up", [])
    if draw(st.booleans()):
        line.options[draw(st.sampled_from(["--workers", "-w"]))] = [str(draw(st.integers(1, 64)))]
    if draw(st.booleans()):
        line.options[draw(st.sampled_from(aliases("up", "--processes")))] = [str(draw(st.integers(1, 64)))]
    flower = draw(st.booleans())
    line.options["--flower" if flower else "--no-flower"] = []
    if flower and draw(st.booleans()):
        # Any port, in use or not: whether it is free is the last thing `up` looks at, after every
        # fault below.
        line.options["--flower-port"] = [str(draw(st.integers(1024, 65535)))]

    def flower_port_without_flower(draw: st.DrawFn, line: Line) -> Case:
        line.options.pop("--flower", None)
        line.options["--no-flower"] = []
        line.options["--flower-port"] = [str(draw(st.integers(1, 65535)))]
        return line.case(draw, "--flower-port with --no-flower", ("--flower-port applies only",))

    def processes_on_solo(draw: st.DrawFn, line: Line) -> Case:
        for name in aliases("up", "--processes"):
            line.options.pop(name, None)
        line.options[draw(st.sampled_from(aliases("up", "--processes")))] = [str(draw(st.integers(2, 64)))]
        line.env["CONQUER_WORKER_POOL"] = "solo"
        return line.case(draw, "--processes with the solo pool", ("does not apply to the solo pool",))

    faults = [
        in_range("--workers", bad_count(1, 64), "workers"),
        in_range("--processes", bad_count(1, 64), "processes"),
        in_range("--flower-port", bad_int(1, 65535), "flower-port"),
        flower_port_without_flower,
        processes_on_solo,
        settings_fault(port),
        *NO_POSITIONALS,
    ]
    return draw_fault(draw, line, faults, settings_fault(port) if setting else None)


@st.composite
def bench_cases(draw: st.DrawFn, port: int, setting: bool = False) -> Case:
    # --tiny: should a fault slip through, the run takes seconds, not a quarter of an hour.
    line = Line("bench", [], {"--tiny": []})
    if draw(st.booleans()):
        line.options["--series"] = [",".join(draw(st.lists(st.sampled_from(SERIES), min_size=1, max_size=3)))]
    if draw(st.booleans()):
        line.options["--repeats"] = [str(draw(st.integers(1, 3)))]

    def unknown_series(draw: st.DrawFn, line: Line) -> Case:
        names = draw(st.lists(st.sampled_from(SERIES), max_size=2))
        # Not blank: `--series io,` means io (blank names are dropped on purpose).
        unknown = draw(texts().filter(lambda text: "," not in text and text.strip() not in ("", *SERIES)))
        line.options["--series"] = [",".join(draw(st.permutations([*names, unknown])))]
        return line.case(draw, "an unknown series", ("series",))

    def both_profiles(draw: st.DrawFn, line: Line) -> Case:
        line.options["--quick"] = []
        return line.case(draw, "--quick and --tiny", ("--quick and --tiny",))

    def out_not_a_directory(draw: st.DrawFn, line: Line) -> Case:
        line.options["--out"] = [draw(st.sampled_from([str(Path(__file__)), "/dev/null/bench"]))]
        return line.case(draw, "--out cannot be written", ("--out", "cannot write"))

    faults = [
        unknown_series,
        in_range("--repeats", bad_int(1, 100), "repeats"),
        both_profiles,
        out_not_a_directory,
        settings_fault(port),
        *NO_POSITIONALS,
    ]
    return draw_fault(draw, line, faults, settings_fault(port) if setting else None)


@st.composite
def demo_cases(draw: st.DrawFn, port: int) -> Case:
    name = draw(not_one_of(DEMOS, positional=True))
    return Case(("demo", name), "an unknown demo", ("unknown demo",))


CASES: dict[str, Callable[[int], st.SearchStrategy[Case]]] = {
    "run": run_cases,
    "compare": compare_cases,
    "submit": submit_cases,
    "status": lambda port: job_id_cases(port, "status"),
    "result": lambda port: job_id_cases(port, "result"),
    "cancel": lambda port: job_id_cases(port, "cancel"),
    "workers": workers_cases,
    "up": up_cases,
    "bench": bench_cases,
    "demo": demo_cases,
}

#: The same command lines with a setting that cannot work (run and compare: with Celery among the
#: executors, the only time they read the settings).
SETTING_CASES: dict[str, Callable[[int], st.SearchStrategy[Case]]] = {
    "run --on celery": lambda port: run_cases(port, setting=True),
    "compare": lambda port: compare_cases(port, setting=True),
    "submit": lambda port: submit_cases(port, setting=True),
    "status": lambda port: job_id_cases(port, "status", setting=True),
    "result": lambda port: job_id_cases(port, "result", setting=True),
    "cancel": lambda port: job_id_cases(port, "cancel", setting=True),
    "workers": lambda port: workers_cases(port, setting=True),
    "up": lambda port: up_cases(port, setting=True),
    "bench": lambda port: bench_cases(port, setting=True),
}


# ------------------------------------------------------------------------------------- tests


def test_the_witness_sees_one_connection_and_its_commands(broker: Witness) -> None:
    """The fuzz tests below could not fail if the witness saw nothing: it sees a single PING."""
    with pytest.raises(AssertionError, match=r"the broker got 1 connection\(s\)"), broker.untouched("PING"):
        ping(broker.server)


def ping(server: RedisServer) -> None:
    client = server.client()
    try:
        client.ping()
    finally:
        client.close()


def test_a_valid_command_run_in_process_does_reach_the_witnessed_broker(broker: Witness) -> None:
    """In process, a command that is not refused talks to the broker the witness watches."""
    case = Case(("status", "0123456789abcdef"), "none", ())
    with pytest.raises(AssertionError, match="the broker got"), broker.untouched("status"):
        outcome = in_process(case, broker)
    assert outcome.code == ExitCode.UNKNOWN_JOB, outcome


def refused_before_the_broker(broker: Witness, case: Case) -> None:
    """`case`, run in process, is refused as bad input and the broker hears nothing of it."""
    with broker.untouched(str(case)):
        outcome = in_process(case, broker)
    assert_refused(case, outcome)


@pytest.mark.parametrize("command", list(CASES))
@FUZZ
@given(data=st.data())
def test_bad_input_exits_2_in_one_line_before_the_broker_hears_of_it(
    broker: Witness, command: str, data: st.DataObject
) -> None:
    case = data.draw(CASES[command](broker.server.port), label="case")
    event(case.fault)  # what was tried, in --hypothesis-show-statistics
    refused_before_the_broker(broker, case)


@pytest.mark.parametrize("command", list(SETTING_CASES))
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_a_setting_that_cannot_work_exits_2_before_the_broker_hears_of_it(
    broker: Witness, command: str, data: st.DataObject
) -> None:
    case = data.draw(SETTING_CASES[command](broker.server.port), label="case")
    refused_before_the_broker(broker, case)


@pytest.mark.parametrize("command", ["status", "result", "cancel"])
@FUZZ
@given(text=st.text(CHARACTERS, max_size=24))
def test_any_text_but_a_job_id_is_refused_as_one(broker: Witness, command: str, text: str) -> None:
    if text.startswith("-") or is_job_id(text):
        return  # an option to click, or an id: asked of the broker, which is right
    case = Case((command, text), "not a job id", ("job id", "job_id"))
    refused_before_the_broker(broker, case)


@pytest.mark.parametrize("command", list(CASES))
@settings(FUZZ, max_examples=2)
@given(data=st.data())
def test_the_console_script_refuses_exactly_as_in_process(
    broker: Witness, command: str, data: st.DataObject
) -> None:
    case = data.draw(CASES[command](broker.server.port), label="case")
    with broker.untouched(str(case)):
        real = as_a_process(case, broker)
    assert_refused(case, real)
    assert in_process(case, broker) == real


@pytest.mark.parametrize(
    "arguments",
    [
        [b"run", b"sum", b"\xff\xfe"],
        [b"run", b"\xc3(", b"10"],
        [b"status", b"0123456789abcde\xff"],
        [b"run", b"sum", b"10", b"--on", b"\xed\xa0\x80"],
    ],
    ids=["N", "KIND", "job id", "executor"],
)
def test_arguments_that_are_not_utf8_are_refused_in_one_line(broker: Witness, arguments: list[bytes]) -> None:
    with broker.untouched(repr(arguments)):
        result = subprocess.run(
            [CONQUER.encode(), *arguments],
            capture_output=True,
            env={**os.environ, **base_env(broker)},
            timeout=60,
            check=False,
        )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert b"Traceback" not in result.stderr
