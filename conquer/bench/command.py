"""The `conquer bench` command. Only click is imported here; the suite, Rich and matplotlib are
imported when the command runs (`conquer --help` must stay fast)."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from conquer import interpreters
from conquer.bench import JSON_FILE, MARKDOWN_FILE, NAMED_ONLY, SERIES
from conquer.exitcodes import ExitCode
from conquer.options import Failure, celery_settings, command

EPILOG = """\b
Examples:
  conquer bench --quick                      # every series but recovery, small jobs: < 2 min on 2 cores
  conquer bench --out docs/bench             # the full run: about a quarter of an hour on 2 cores
  conquer bench --quick --series ratios,io --out /tmp/bench
  conquer bench --series builds --python .venv-ft/bin/python --python .venv/bin/python
  conquer bench --series recovery --out /tmp/recovery   # root: faults on several hosts

\b
Writes DIR/results.json (schema: docs/bench/SCHEMA.md), DIR/results.md and, with
matplotlib installed (pip install 'conquer[bench]'), one PNG chart per series.
Exit status 0 when every point was measured and verified, 7 if an answer was wrong,
1 if a point failed; the files are written in every case.
"""


def parse_series(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return SERIES
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in SERIES + NAMED_ONLY]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown series {unknown[0] if unknown else value!r} (choose from "
            f"{', '.join(SERIES + NAMED_ONLY)})",
            param=param,
        )
    return names


@command(epilog=EPILOG)
@click.option(
    "--quick",
    is_flag=True,
    help="Every series on small jobs: under 2 minutes on 2 cores (recovery, only when named: 2 rounds).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for results.json, results.md and the charts (created if missing).",
)
@click.option(
    "--series",
    "names",
    callback=parse_series,
    default=None,
    metavar="LIST",
    help=f"Comma-separated series to run [default: all but {', '.join(NAMED_ONLY)}]: "
    f"{', '.join(SERIES + NAMED_ONLY)}. recovery (faults on several hosts: root and nftables; 5 rounds "
    "of 1-2 minutes per broker, 2 with --quick) runs only when named.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=None,
    help="Runs per point [default: 5]. Below 5 only for trying things out.",
)
@click.option("--json", "as_json", is_flag=True, help="Also print the JSON document on stdout.")
@click.option(
    "--python",
    "pythons",
    multiple=True,
    callback=interpreters.option,
    metavar="PYTHON",
    help="The builds series: run its rows under this Python (a path, or a command on PATH); give it "
    "again for each build, e.g. a free-threaded one and a GIL one. Each needs conquer installed; the "
    "rounds interleave them [default: this Python only]. The other series run in this process.",
)
@click.option("--tiny", is_flag=True, hidden=True, help="The tests' run: seconds per series.")
def bench(
    quick: bool,
    out: Path,
    names: tuple[str, ...],
    repeats: int | None,
    as_json: bool,
    pythons: tuple[interpreters.Interpreter, ...],
    tiny: bool,
) -> int:
    """Benchmark every executor: scaling, targets, granularity, I/O, overhead, start-up, memory; and,
    when named, Celery's recovery from faults."""
    import dataclasses

    from conquer.bench import charts, suite
    from conquer.bench.interrupts import Interrupts, stop_children
    from conquer.bench.profiles import PROFILES
    from conquer.bench.reporter import Reporter

    if quick and tiny:
        raise click.UsageError("--quick and --tiny are different profiles: choose one")
    if pythons and "builds" not in names:
        raise click.UsageError("--python applies to the builds series only: add builds to --series")
    celery_settings()  # the Celery settings and URLs, read now: one that cannot work is bad input (exit 2)
    profile = PROFILES["tiny" if tiny else "quick" if quick else "full"]
    if repeats is not None:
        profile = dataclasses.replace(profile, repeats=repeats, recovery_repeats=repeats)
    try:  # fail now, not after a quarter of an hour of measuring
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise Failure(f"cannot write to {out}: {error.strerror}", ExitCode.USAGE) from None
    command = shlex.join(["conquer", *sys.argv[1:]])
    run = suite.Run(profile, command, pythons)
    try:
        with (
            Interrupts() as interrupts,
            Reporter(bar=sys.stderr.isatty(), check=interrupts.check) as reporter,
        ):
            reporter.line(f"conquer bench: {profile.name} profile, {profile.repeats} runs per point → {out}")
            run.measure(names, reporter)
    except KeyboardInterrupt:
        stop_children()
        write(run.document(), out)  # what was measured so far, without charts: Ctrl-C wants out now
        click.echo(f"conquer bench: interrupted; wrote what was measured to {out}/{JSON_FILE}", err=True)
        raise
    document = run.document()
    write(document, out)  # the results are safe before the charts are drawn
    if charts.available():
        document["charts"] = charts.render(document, out)
        write(document, out)  # now listing the charts, and showing them in the Markdown
    else:
        document["notes"].append(f"charts not drawn: matplotlib is not installed; {charts.INSTALL_HINT}")
        write(document, out)
        click.echo(
            f"conquer bench: charts skipped: matplotlib is not installed. Install the bench extra: "
            f"{charts.INSTALL_HINT}",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        summarize(document, out)
    wrong, failed = suite.failures(document)
    if wrong:
        return ExitCode.WRONG_ANSWER
    return ExitCode.JOB_FAILED if failed else ExitCode.OK


def write(document: dict[str, Any], out: Path) -> None:
    from conquer.bench import tables

    (out / JSON_FILE).write_text(json.dumps(document, indent=2) + "\n")
    (out / MARKDOWN_FILE).write_text(tables.render(document))


def summarize(doc: dict[str, Any], out: Path) -> None:
    facts = doc["machine"]
    click.echo(
        f"conquer bench ({doc['profile']}): {len(doc['series'])} series in {doc['duration_s']:.0f} s on "
        f"{facts['cores']} cores ({facts['cpu']}), {facts['implementation']} {facts['python']}; "
        f"load {facts['load_average']} → {facts['load_average_after']}"
    )
    click.echo("targets:")
    for target in doc["targets"]:
        own = "" if target["conditions_match"] or target["value"] is None else "  [smaller job: indicative]"
        detail = target["summary"] if target["value"] is not None else f"not measured: {target['reason']}"
        click.echo(f"  {target['statement']}\n      {detail}{own}")
    for note in doc["notes"]:
        click.echo(f"note: {note}")
    files = [JSON_FILE, MARKDOWN_FILE, *(chart["file"] for chart in doc["charts"])]
    click.echo(f"wrote {out}/: {', '.join(files)}")
