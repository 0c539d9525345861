"""What every `conquer` command shares: its options, how a job is built from them, the one-line
failures, and the Celery settings lookup. Every command module imports this one; it imports no
command (so no import cycle), and only click and light modules at start-up (`conquer --help` is fast).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conquer.exitcodes import ExitCode
from conquer.numbers import FiniteFloatRange
from tasks import KINDS

if TYPE_CHECKING:
    from tasks import Job
    from workers.celery.settings import Settings

DEFAULT_CHUNKS = 16

F = TypeVar("F", bound=Callable[..., Any])


class Failure(Exception):
    """An expected failure: printed as one line, exits with its ExitCode."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def wrong_answer(answer: str, expected: int, check_method: str, job_id: str | None = None) -> Failure:
    """Exit 7's one line: the answer, and what the independent check says instead."""
    job = f"job {job_id}: " if job_id else ""
    return Failure(
        f"{job}wrong answer: {answer} does not match the independent check, {expected} ({check_method})",
        ExitCode.WRONG_ANSWER,
    )


# ------------------------------------------------------------------------------------ values


class Count(click.types.IntParamType):
    """A whole number, written 100000000, 100_000_000 or 1e8 (`conquer.numbers.parse_count`); never
    negative. Whether it is big enough is for whoever uses it to say (a job's n, its chunks...)."""

    name = "count"

    def __init__(self, metavar: str = "COUNT") -> None:
        self.metavar = metavar

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from conquer.numbers import parse_count

        try:
            number = parse_count(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if number < 0:
            self.fail(f"{value.strip()} is negative", param, ctx)
        return number


COUNT = Count()
#: How the help explains COUNT (and N, ITEM): one sentence, under each command that takes one.
COUNT_HELP = "N, ITEM and every COUNT are whole numbers, written 100000000, 100_000_000 or 1e8."


class FaultSpec(click.types.StringParamType):
    """A fault spec (`tasks.faults`), returned in canonical form; ITEM may be written as any count."""

    name = "spec"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SPEC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from conquer.numbers import parse_count
        from tasks.faults import FaultError, parse

        try:
            return parse(value, number=parse_count).spec
        except FaultError as error:
            self.fail(str(error), param, ctx)


#: Matches a word click would take for an option but that is a negative number (`-5`, `-1e3`, `-.5`).
NEGATIVE = re.compile(r"-\.?[0-9].*")


#: The variables a command reads, as (name, meaning with its default) pairs.
Variables = Callable[[], list[tuple[str, str]]]


class Command(click.Command):
    """A command of `conquer`:

    - its arguments may be negative numbers, refused by their types as bad input (click alone reads
      `conquer run sum -5` as an option `-5`: "No such option");
    - its help may end with the variables it reads (`environment`), listed when the help is shown:
      they come from the settings module, which start-up does not import.
    """

    def __init__(self, *args: Any, environment: Variables | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environment = environment

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, negatives_as_arguments(self.get_params(ctx), args, ctx))

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.environment is not None:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(environment_help(self.environment()))


def negatives_as_arguments(
    params: list[click.Parameter], args: list[str], ctx: click.Context | None = None
) -> list[str]:
    """`args` with the arguments (words that are no option and no option's value) moved after `--`,
    if one of them is a negative number; otherwise unchanged."""
    names = {name for param in params if isinstance(param, click.Option) for name in param.opts}
    valued = {
        name
        for param in params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in param.opts
    }
    options: list[str] = []
    arguments: list[str] = []
    lacking = None  # an option at the end, without its value
    at = 0
    while at < len(args):
        word = args[at]
        at += 1
        if word == "--":
            arguments += args[at:]
            break
        if (NEGATIVE.fullmatch(word) and word not in names) or not word.startswith("-") or word == "-":
            arguments.append(word)
            continue
        options.append(word)
        # `--opt VALUE` (`--opt=VALUE` is one word); in a cluster of short options (`-vk 5`, `-k5`),
        # the first that takes a value takes the rest of the word, or else the next word.
        letters = [word] if word.startswith("--") else [f"-{letter}" for letter in word[1:]]
        taker = next((index for index, name in enumerate(letters) if name in valued), None)
        if taker is not None and taker == len(letters) - 1:
            if at == len(args):
                lacking = letters[taker]
                break
            options.append(args[at])
            at += 1
    if not any(NEGATIVE.fullmatch(word) and word not in names for word in arguments):
        return args
    if lacking is not None:  # moved before `--`, it would take `--` for its value: say what click would
        raise click.BadOptionUsage(lacking, f"Option '{lacking}' requires an argument.", ctx)
    return [*options, "--", *arguments]


def command(**settings: Any) -> Callable[[Callable[..., Any]], Command]:
    """`click.command` for the commands of `conquer`: negative numbers are refused by their types."""
    return click.command(cls=Command, **settings)


# ----------------------------------------------------------------------------------- options

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def job_arguments(function: F) -> F:
    """KIND and N, the job every job command takes."""
    function = click.argument("n", type=Count("N"))(function)
    return click.argument("kind", type=click.Choice(tuple(KINDS)), metavar="KIND")(function)


def kinds_help() -> str:
    """The KIND block of a job command's help: each kind and what it computes."""
    width = max(len(name) for name in KINDS)
    kinds = "\n".join(f"  {kind.name:{width}}  {kind.summary}" for kind in KINDS.values())
    return f"\b\nKIND, the job over 1..N:\n{kinds}\n\n{COUNT_HELP}"


CHUNKS_OPTION = click.option(
    "--chunks",
    "-k",
    type=COUNT,
    default=None,
    help=f"Ranges to cut 1..N into [default: {DEFAULT_CHUNKS}, or N if smaller].",
)
WORKERS_OPTION = click.option(
    "--workers",
    "-w",
    type=COUNT,
    default=None,
    help="Threads/processes/coroutines to run them on [default: the cores here].",
)


def seconds_option(name: str, low: float, high: float, default: float | None, help: str) -> Callable[[F], F]:
    """An option taking SECONDS within low..high (nan refused); a default of None is left for `help`
    to state."""
    return click.option(
        name,
        type=FiniteFloatRange(low, high),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help=help,
    )


LATENCY_OPTION = seconds_option("--latency", 0, 10, 0.1, "download only: seconds each item waits.")
FAIL_AT_OPTION = click.option(
    "--fail-at",
    type=Count("ITEM"),
    default=None,
    help="Fault injection: the chunk holding ITEM raises (the same as --fault fail@ITEM).",
)

#: What each fault does (`tasks.faults`), wherever it runs; then what only Celery does about it, and
#: how that reads among every executor.
FAULTS = (
    ("fail@ITEM raises", "", ""),
    (
        "transient:K@ITEM raises on its first K attempts",
        "each retried with backoff",
        "Celery retries it with backoff; in-host executors don't",
    ),
    (
        "slow:S@ITEM sleeps S s first",
        "past the chunk time limit it fails cleanly",
        "past Celery's chunk time limit it fails cleanly",
    ),
    (
        "stuck:S@ITEM sleeps S s ignoring the soft time limit",
        "the hard limit kills its process",
        "Celery's hard limit kills its process",
    ),
    ("corrupt@ITEM returns a wrong partial, which only the independent check catches (exit 7)", "", ""),
)


def fault_help(in_host: bool) -> str:
    """`--fault`'s help: for `run`/`compare` (`in_host`: any executor), or for `submit` (Celery only)."""
    faults = [
        f"{what} ({note})" if (note := in_host_note if in_host else celery_note) else what
        for what, celery_note, in_host_note in FAULTS
    ]
    return f"Fault injection for the chunk holding ITEM: {'; '.join(faults)}."


def fault_option(in_host: bool) -> Callable[[F], F]:
    return click.option("--fault", type=FaultSpec(), default=None, help=fault_help(in_host))


def environment_help(variables: list[tuple[str, str]]) -> str:
    """The `Environment:` block of a command's help: each variable it reads, its meaning and default
    (wrapped here: click keeps a `\\b` block as it is)."""
    import textwrap

    width = max(len(name) for name, _ in variables)
    lines = [
        textwrap.fill(meaning, 100, initial_indent=f"  {name:{width}}  ", subsequent_indent=" " * (width + 4))
        for name, meaning in variables
    ]
    return "\b\nEnvironment (a value that cannot work exits 2):\n" + "\n".join(lines)


# -------------------------------------------------------------------------------- job, workers


def build_job(
    kind: str,
    n: int,
    chunks: int | None,
    latency: float,
    fail_at: int | None = None,
    fault: str | None = None,
) -> Job:
    """The job the options describe; one that cannot be built is bad input (exit 2)."""
    from tasks import Job, JobError

    if fail_at is not None and fault is not None:
        raise click.UsageError("give --fail-at or --fault, not both (--fail-at ITEM is --fault fail@ITEM)")
    try:
        return Job(
            kind,
            n,
            chunks if chunks is not None else min(DEFAULT_CHUNKS, max(n, 1)),
            latency=latency,
            fail_at=fail_at,
            fault=fault,
        )
    except JobError as error:
        raise click.UsageError(str(error)) from None


def warn(command: str, message: str) -> None:
    """One line on stderr about an option that does not do what it says here; the command goes on."""
    click.echo(f"conquer {command}: {' '.join(message.split())}", err=True)


def default_workers() -> int:
    from conquer.machine import cores

    return cores()


# ------------------------------------------------------------------------------------ settings


def celery_settings() -> Settings:
    """This process's Celery settings (`workers.celery.settings`); a variable that cannot work is bad input
    (exit 2), read before anything is started or sent."""
    from workers.celery.settings import ENV_BACKEND, ENV_BROKER, RESULT_BACKENDS, SettingsError, settings

    try:
        found = settings()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    for name, url in ((ENV_BROKER, found.broker_url), (ENV_BACKEND, found.result_backend)):
        if url.partition("://")[0] in RESULT_BACKENDS:  # a Redis URL (a RabbitMQ one: Settings checked it)
            _check_redis_url(name, url)
    return found


def _check_redis_url(name: str, url: str) -> None:
    """Refuse a Redis URL (whose scheme and database Settings checked) that the client cannot even
    build a connection from (a port that is not a number, an unknown option...): bad input, not an
    unreachable broker."""
    from workers.celery.brokers.redis import redis_client
    from workers.celery.settings import mask

    try:
        client = redis_client(url)
        try:
            client.connection_pool.make_connection()  # what the first command would use; not connected
        finally:
            client.close()
    except (ValueError, TypeError) as error:
        # The parser's reason quotes parts of the URL: of one that holds a password, only the masked URL.
        reason = f": {error}" if "@" not in url else ""
        raise click.UsageError(f"{name} is not a usable Redis URL, {mask(url)!r}{reason}") from None


# ------------------------------------------------------------------------------------- brokers


def parse_brokers(value: str | None) -> list[str] | None:
    """`--broker` of `compare`: a comma-separated list of the celery executor's brokers (checked by
    `workers.variants`), or None."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()] or None


def check_brokers(settings: Settings, asked: list[str] | None) -> None:
    """Refuse, before anything starts, the brokers `asked` for (`--broker`) that cannot be: another
    than the one configured (an external broker: exit 2), or a RabbitMQ node where no rabbitmq-server
    is installed (exit 10)."""
    from workers.celery.brokers import for_url
    from workers.celery.settings import ENV_BROKER, mask

    if settings.broker_configured:
        configured = for_url(settings.broker_url).NAME
        other = [name for name in asked or () if name != configured.lower()]
        if other:
            raise click.UsageError(
                f"--broker {other[0]} starts a private broker, but {ENV_BROKER} points at {configured} "
                f"({mask(settings.broker_url)}): unset it, or leave --broker out"
            )
    elif asked and "rabbitmq" in asked:
        from workers.celery.brokers import rabbitmq

        try:
            rabbitmq.server_binary()
        except RuntimeError as error:
            raise Failure(f"--broker rabbitmq: {error}", ExitCode.CANNOT_RUN_HERE) from None
