"""Human-readable output. Imports Rich lazily: `conquer --help` must not pay for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from workers import Report


def console(stderr: bool = False) -> Console:
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped into a file or a test, tables keep their full width instead of Rich's default of 80.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def verdict(verified: bool) -> str:
    return "[green]✓ verified[/]" if verified else "[bold red]✗ MISMATCH[/]"


def how(report: Report) -> str:
    parts = [part for part in (report.ipc, report.start_method) if part]
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{report.executor}{detail}, {report.workers} worker(s)"


def report(report: Report, verbose: bool) -> None:
    import sys

    from conquer.interpreters import this

    out = console()
    job = report.job
    out.print(f"[bold]{job.describe()}[/] on {how(report)}")
    out.print(f"  answer  {report.value}")
    out.print(f"  check   {report.expected}  ({report.check_method})  {verdict(report.verified)}")
    out.print(f"  wall    {report.wall_s:.3f} s")
    out.print(f"  python  {build(this().to_dict())}  ({sys.executable})")
    if report.details.get("broker"):
        note = deployment_note({"executor": report.executor, "deployment": report.details})
        out.print(f"  broker  {note.partition(': ')[2]}")
    if verbose:
        out.print(chunk_table(report))


def chunk_table(report: Report) -> Any:
    from rich.table import Table

    origin = min(chunk.started for chunk in report.chunks)
    table = Table(title="who ran each chunk (times in s from the first chunk's start)")
    for column in ("chunk", "range", "partial", "host", "pid", "thread", "start", "end", "s"):
        table.add_column(column, justify="right" if column not in ("host", "thread") else "left")
    for chunk in report.chunks:
        table.add_row(
            str(chunk.index),
            f"[{chunk.start}, {chunk.stop})",
            str(chunk.value),
            chunk.host,
            str(chunk.pid),
            chunk.thread,
            f"{chunk.started - origin:.3f}",
            f"{chunk.ended - origin:.3f}",
            f"{chunk.seconds:.3f}",
        )
    return table


def comparison(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from conquer import figures
    from conquer.interpreters import Interpreter
    from conquer.interpreters import names as interpreter_names

    facts, results = summary["machine"], summary["results"]
    interpreters = summary["interpreters"]
    several = len(interpreters) > 1
    across = several and summary.get("gil_serial_interpreter") is not None
    names = interpreter_names([Interpreter.from_dict(found) for found in interpreters])
    notes = [
        deployment_note(row, names[row["interpreter_index"]] if several else None)
        for row in results
        if row.get("deployment")
    ]
    cpu_notes = dict.fromkeys(row["cpu_s_note"] for row in results if row.get("cpu_s_note"))
    efficiency = "efficiency = speedup / cores" if summary["latency"] is None else "I/O-bound: no efficiency"
    if several:
        python = "python: " + "; ".join(
            f"{name} = {found['executable']}" for name, found in zip(names, interpreters, strict=True)
        )
        python += " (t: a free-threaded build) · speedup over the same build's serial"
        if across:
            python += ", vs GIL serial over the GIL build's serial"
    else:
        python = f"Python {build(interpreters[0])}"
    gil_back = [name for name, found in zip(names, interpreters, strict=True) if gil_came_back(found)]
    warnings = [
        f"{name}: a free-threaded build, but the GIL was ON during its runs (PYTHON_GIL=1, or an extension "
        "module switched it back on): its rows are not free-threaded figures"
        for name in gil_back
    ]
    table = Table(
        title=f"{summary['kind']} 1..{summary['n']:_} in {summary['chunks']} chunks — "
        f"median of {summary['repeats']} run(s)",
        caption=f"{facts['cores']} cores · {facts['cpu']} · {python} · {efficiency} · "
        "CPU s = CPU time of the run's process tree (median)"
        + "".join(f"\n{note}" for note in [*warnings, *notes, *(f"CPU s {note}" for note in cpu_notes)]),
    )
    columns = ["executor", *(["python"] if several else []), "IPC", "start method", "workers", "wall s"]
    columns += ["min–max", "CPU s", "speedup", *(["vs GIL serial"] if across else []), "efficiency"]
    for column in [*columns, "verified", "flags"]:
        left = column in ("executor", "python", "IPC", "start method", "flags")
        # Figures never wrap nor shrink to an ellipsis: the text columns give way, folding a long word.
        no_wrap = not left or column == "python"
        table.add_column(column, justify="left" if left else "right", no_wrap=no_wrap, overflow="fold")
    for row in results:
        median, flags = row["wall_s_median"], row["flags"]
        own = [flag for flag in flags if flag["cause"] != figures.GIL_SERIAL]
        theirs = [
            flag for flag in flags if flag["flag"] == "disturbed" or flag["cause"] == figures.GIL_SERIAL
        ]
        cells = [row["executor"]]
        if several:
            cells.append(python_cell(names[row["interpreter_index"]], row["interpreter"]))
        cells += [
            row["ipc"] or broker(row.get("deployment")) or "—",
            row["start_method"] or "—",
            str(row["workers"]),
            seconds(median),
            f"{seconds(row['wall_s_min'])}–{seconds(row['wall_s_max'])}" if median is not None else "—",
            seconds(row["cpu_s_median"]),
            flagged(times(row["speedup"]), own),
        ]
        if across:
            cells.append(flagged(times(row["speedup_vs_gil_serial"]), theirs))
        cells += [
            flagged(f"{row['efficiency']:.0%}" if row["efficiency"] else "—", own),
            verdict(row["verified"]) if row["error"] is None else f"[red]failed: {row['error']}[/]",
            figures.cell(flags),
        ]
        table.add_row(*cells)
    out = console()
    out.print(table)
    for line in figures.legend([flag for row in results for flag in row["flags"]]):
        out.print(f"{MARKS[line.split()[0].rstrip(':')]} {line}", markup=False)


def build(found: dict[str, Any]) -> str:
    """An interpreter as a caption says it: `3.11.2`, `3.13.5 (free-threaded, GIL off)`."""
    version: str = found["version"]
    if not found["free_threaded"]:
        return version
    return f"{version} (free-threaded, GIL {'ON' if found['gil_enabled'] else 'off'})"


def gil_came_back(found: dict[str, Any]) -> bool:
    return bool(found["free_threaded"] and found["gil_enabled"])


def python_cell(name: str, found: dict[str, Any]) -> str:
    """The row's Python, with its GIL where the build lets it be off: off, or ON (not free-threaded)."""
    if not found["free_threaded"]:
        return name
    return f"{name} [bold red]GIL ON[/]" if found["gil_enabled"] else f"{name} GIL off"


def times(value: float | None) -> str:
    return f"{value:.2f}×" if value else "—"


#: How a flagged figure is marked: ✗ cannot be true, ? cannot be trusted.
MARKS = {"impossible": "✗", "disturbed": "?", "baseline": "?"}


def seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "—"


def flagged(figure: str, flags: list[dict[str, str]]) -> str:
    """A speedup or efficiency as printed: marked, never plain, when its row is flagged."""
    if figure == "—" or not flags:
        return figure
    if any(flag["flag"] == "impossible" for flag in flags):
        return f"[bold red]{figure} ✗[/]"
    return f"[yellow]{figure} ?[/]"


def broker(deployment: dict[str, Any] | None) -> str | None:
    """The IPC of a broker executor: its broker, embedded (started for this run) or external."""
    return f"{deployment.get('broker_name', 'Redis')} ({deployment['broker']})" if deployment else None


def deployment_note(row: dict[str, Any], under: str | None = None) -> str:
    """What a row's executor set up; `under`: the name of the Python it ran under, if there were several."""
    deployment = row["deployment"]
    who = f"{row['executor']} under {under}" if under else row["executor"]
    if deployment["broker"] == "embedded":
        return (
            f"{who}: {deployment['stack']}; start-up {deployment['setup_s']:.1f} s "
            "(a deployment cost, not in the wall time)"
        )
    return f"{who}: workers already running at {deployment['broker_url']}"


def bars() -> Any:
    """Rich's display of progress bars on stderr (description, bar, done/total, elapsed), gone when
    stopped: one bar per task added to it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )


@contextmanager
def bar(total: int, description: str, enabled: bool) -> Iterator[Any]:
    """One transient bar on stderr, advanced by calling what this yields; a no-op (None) when stderr
    is not a terminal (scripts, tests)."""
    if not enabled:
        yield None
        return
    display = bars()
    with display:
        task = display.add_task(description, total=total)
        yield lambda *_: display.advance(task)
