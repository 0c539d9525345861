"""The Markdown report of a bench run: machine facts, the targets' statuses, one table per series, and
the charts when there are any. Built from the JSON document alone, so it can be redrawn from a file."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from conquer import figures as judging
from conquer.bench import targets

MB = 1_000_000


def duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def megabytes(count: float) -> str:
    return f"{count / MB:.1f} MB"


def ratio(value: float) -> str:
    return f"{value:.2f}×"


def percent(value: float) -> str:
    return f"{value:.0%}"


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def figure(key: str, value: Any) -> str:
    """`value` formatted by what its key says it is (…_s seconds, …_bytes bytes, speedup ×, ...)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if not isinstance(value, list) else ", ".join(str(item) for item in value)
    formats: list[tuple[Callable[[str], bool], Callable[[float], str]]] = [
        (lambda name: name.endswith("bytes"), megabytes),
        (lambda name: name.endswith("per_s") or name == "per_second", rate),
        (lambda name: name.endswith("_s"), duration),
        (lambda name: name in ("efficiency", "of_limit", "spread"), percent),
        (lambda name: "speedup" in name or name == "growth" or name.endswith("_over_processes"), ratio),
    ]
    for matches, render in formats:
        if matches(key):
            return render(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


#: Parameters that a point's label already spells out (e.g. "processes/queue/fork").
IN_LABEL = ("executor", "ipc", "start_method", "broker", "mechanism", "tool", "command", "transport")

#: Column headings for metrics and derived figures; any other key is shown with spaces for underscores.
HEADINGS = {
    "wall_s": "wall time",
    "round_trip_s": "round trip",
    "start_s": "time to start all",
    "peak_rss_bytes": "tree's peak, at most",
    "ideal_speedup": "ideal",
    "efficiency": "efficiency (speedup/cores)",
    "of_limit": "share of the latency limit",
    "chunks_per_s": "chunks/s",
    "per_second": "per second",
    "p50_s": "p50 (redis-benchmark)",
    "per_process_s": "per process",
    "command_peak_rss_bytes": "command's peak RSS",
    "largest_worker_peak_rss_bytes": "largest worker's peak RSS",
}


def heading(key: str) -> str:
    return HEADINGS.get(key, key.replace("_", " "))


def metric(point: dict[str, Any]) -> tuple[str, str]:
    """(median, min–max and the range as a share of the median) of a point, or why it has none."""
    median = point["median"]
    if median is None:
        return f"**{'wrong answer' if point['error'].startswith('wrong answer') else 'failed'}**", "—"
    unit_key = "x_bytes" if point["unit"] == "bytes" else "x_s"
    if point["spread"] is None:
        return figure(unit_key, median), "—"
    low, high = figure(unit_key, point["min"]), figure(unit_key, point["max"])
    return figure(unit_key, median), f"{low}–{high} ({percent(point['spread'])})"


def cpu(point: dict[str, Any]) -> str:
    """The median CPU time of a point's runs, or why there is none."""
    if point.get("cpu_s") is not None:
        return figure("cpu_s", point["cpu_s"])
    return "not measured" if point.get("cpu_s_note") else "—"


#: Derived figures computed from a point's measured median against serial or a limit: marked as
#: the point's flags say (an ideal or a count is not).
JUDGED = ("speedup", "efficiency", "of_limit")


def flagged(key: str, point: dict[str, Any]) -> str:
    """A derived figure as printed: marked when its point is flagged (✗ impossible, ? disturbed)."""
    text, flags = figure(key, point["derived"].get(key)), point.get("flags") or []
    if key not in JUDGED or text == "—" or not flags:
        return text
    return f"{text} {'✗' if any(flag['flag'] == judging.IMPOSSIBLE for flag in flags) else '?'}"


def series_table(series: dict[str, Any]) -> list[str]:
    points = series["points"]
    if not points:
        return ["(no points measured)"]
    # Only the parameters every point has and that differ between points make columns; the rest are
    # in the series' description.
    keys = [
        key
        for key in points[0]["params"]
        if key not in IN_LABEL
        and all(key in point["params"] for point in points)
        and len({repr(point["params"][key]) for point in points}) > 1
    ]
    derived = list(dict.fromkeys(key for point in points for key in point["derived"]))
    timed = any(point.get("runs") for point in points)
    header = ["what", *keys, heading(points[0]["metric"]), "range (min–max)", *(["CPU"] if timed else [])]
    header += [*map(heading, derived), "flags"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        cells = [point["label"], *(figure(key, point["params"].get(key)) for key in keys), *metric(point)]
        cells += [cpu(point)] if timed else []
        cells += [flagged(key, point) for key in derived]
        cells.append(judging.cell(point.get("flags") or []))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def flags_section(document: dict[str, Any]) -> list[str]:
    """What each flag present in the run means and what to do, once."""
    found = [
        flag for series in document["series"] for point in series["points"] for flag in point.get("flags", [])
    ]
    if not found:
        return []
    limits = judging.THRESHOLDS
    return [
        "",
        "## Flags",
        "",
        "A flagged figure is not a result: ✗ *impossible* (a speedup above what the job allows on these "
        "cores), ? *disturbed* (stolen CPU time above "
        f"{limits['steal_share']:.0%} or other processes' CPU time above {limits['other_cpu_share']:.0%} of "
        f"the CPUs' time during its runs, or runs that differ by more than {limits['spread']:.0%} of their "
        "median), ? *baseline* (a speedup over a disturbed serial run). What to do:",
        "",
        *(f"- {line}" for line in judging.legend(found)),
    ]


def flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in flatten(f"{prefix}{key}.", item)]
    return [(prefix.rstrip("."), value)]


def machine_lines(document: dict[str, Any]) -> list[str]:
    facts = document["machine"]
    build = "free-threaded build" if facts["free_threaded_build"] else "GIL build"
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items() if version)
    broker = facts["broker"]
    broker_text = broker["kind"] + (f" ({broker['url']})" if broker.get("url") else "")
    return [
        f"- **machine**: {facts['cores']} cores ({facts['cpu']}), {facts['platform']}, "
        f"{megabytes(facts['memory_bytes']) if facts['memory_bytes'] else '? MB'} of memory",
        f"- **Python**: {facts['implementation']} {facts['python']} ({build}, GIL "
        f"{'on' if facts['gil_enabled'] else 'off'}; {facts['python_build']}, {facts['python_compiler']}); "
        f"default start method {facts['default_start_method']}",
        f"- **packages**: {packages}",
        f"- **broker**: {broker_text}",
        f"- **load average** (1, 5, 15 min): {facts['load_average']} before, "
        f"{facts['load_average_after']} after",
        f"- **run**: `{document['command']}`, profile {document['profile']}, {document['repeats']} runs per "
        f"point, started {document['started']}, took {duration(document['duration_s'])}",
    ]


def targets_table(document: dict[str, Any]) -> list[str]:
    lines = [
        "| target | issue | measured | status | the target's own job? |",
        "|---|---|---|---|---|",
    ]
    for target in document["targets"]:
        status = target["status"] if target["status"] != "missed" else f"missed by {target['shortfall']:.1%}"
        if target["status"] == "flagged":
            status += f": {targets.where(target['flags'])}"
        measured = target["summary"].split(" (target")[0] if target["value"] is not None else "—"
        if target["reason"]:
            measured += f" ({target['reason']})"
        own = "yes" if target["conditions_match"] else "no: a smaller job (indicative only)"
        lines.append(f"| {target['statement']} | #{target['issue']} | {measured} | **{status}** | {own} |")
    notes = dict.fromkeys(target["note"] for target in document["targets"] if target["note"])
    return lines + [f"\n> {note}" for note in notes]


def render(document: dict[str, Any]) -> str:
    out = [
        f"# conquer bench — {document['profile']} run" + ("" if document["complete"] else " (INTERRUPTED)"),
        "",
        *machine_lines(document),
        "",
        "Every figure is the median of its runs; *range* is the lowest and highest run and, in brackets, "
        "max − min as a share of the median; *CPU* is the median CPU time (user + system) of the run's "
        "whole process tree — this process, its workers and, for Celery, the stack's worker processes "
        "and Redis. Every answer was checked against an independent computation; a point whose answer "
        "was wrong is reported as such, without a figure. *flags* says when a figure cannot be taken at "
        "its word (see Flags below, when any).",
        "",
        "## Targets",
        "",
        *targets_table(document),
    ]
    for series in document["series"]:
        out += ["", f"## {series['title']} (`{series['name']}`)", "", series["what"], ""]
        out += SERIES_TABLES.get(series["name"], series_table)(series)
        facts = [pair for pair in flatten("", series["derived"]) if pair[1] not in (None, [])]
        listed = [f"- {key}: {figure(key.rpartition('.')[2], value)}" for key, value in facts]
        listed += [f"- *not measured*: {item['what']} — {item['reason']}" for item in series["skipped"]]
        if listed:
            out += ["", *listed]
        load = series["load_average"]
        out += ["", f"Load average before/after: {load['before']} / {load['after']}; took "
                f"{duration(series['duration_s'])}."]  # fmt: skip
        for chart in document["charts"]:
            if chart["series"] == series["name"]:
                out += ["", f"![{chart['title']}]({chart['file']})"]
    out += flags_section(document)
    if document["notes"]:
        out += ["", "## Notes", "", *(f"- {note}" for note in document["notes"])]
    return "\n".join(out) + "\n"


def recovery_table(series: dict[str, Any]) -> list[str]:
    """The `recovery` series: a row per broker and fault — the fault-free run first, as the baseline —
    with the time from the fault to the answer and the recovery cost, each median and range, and
    what went wrong (wrong answers, combines run twice, faults that missed their chunk)."""
    points = series["points"]
    if not points:
        return ["(no points measured)"]
    header = ["broker", "fault", "runs", "wall time (median)", "fault → answer (median, range)",
              "recovery cost (median, range)", "chunk runs beyond one each, per run", "wrong answers",
              "combined twice", "faults off-chunk"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        derived = point["derived"]
        if point["median"] is None:
            measured = (
                f"**{'wrong answer' if (point['error'] or '').startswith('wrong answer') else 'failed'}**"
            )
        else:
            measured = f"{point['median']:.2f} s ({point['min']:.2f}–{point['max']:.2f})"
        fault = point["label"].partition(": ")[2]
        if point["params"]["fault"] == "none":
            cells = [measured, "—", "—", "—", "—", "—", "—"]
        else:
            cost = derived.get("recovery_cost_s")
            low, high = derived.get("recovery_cost_min_s"), derived.get("recovery_cost_max_s")
            walls = derived.get("faulted_walls_s") or []
            cells = [
                f"{statistics.median(walls):.2f} s" if walls else "—",
                measured,
                "—" if cost is None else f"**{cost:+.2f} s** ({low:+.2f}–{high:+.2f})",
                ", ".join(str(count) for count in derived.get("extra_chunk_runs", [])) or "—",
                str(derived.get("wrong_answers", 0)),
                str(derived.get("double_combines", 0)),
                str(derived.get("faults_off_chunk", 0)),
            ]
        row = [point["params"]["broker"], fault, str(point["repeats"]), *cells]
        lines.append("| " + " | ".join(row) + " |")
    errors = [f"- {point['label']}: {point['error']}" for point in points if point["error"]]
    return lines + (["", *errors] if errors else [])


#: Series whose table is their own, not `series_table`'s.
SERIES_TABLES: dict[str, Callable[[dict[str, Any]], list[str]]] = {"recovery": recovery_table}
