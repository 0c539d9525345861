"""Runs the chosen series of `conquer bench` and assembles the one JSON document they make up."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from conquer import machine
from conquer.bench import (
    SCHEMA,
    SERIES,
    cpu,
    granularity,
    io_bound,
    memory,
    ratios,
    roundtrip,
    startup,
    targets,
    throughput,
)
from conquer.bench.points import Series
from conquer.bench.profiles import Profile
from conquer.bench.progress import Reporter

Measure = Callable[[Profile, int, Reporter], Series]

MEASURES: dict[str, Measure] = {
    "ratios": ratios.measure,
    "cpu": cpu.measure,
    "granularity": granularity.measure,
    "io": io_bound.measure,
    "trivial": throughput.measure,
    "round-trip": roundtrip.measure,
    "startup": startup.measure,
    "memory": memory.measure,
}
assert tuple(MEASURES) == SERIES, "conquer.bench.SERIES lists the series in the order they run"


def run(profile: Profile, names: Sequence[str], reporter: Reporter, command: str) -> dict[str, Any]:
    """Measure each series in `names` (in SERIES order) and return the whole document."""
    started = datetime.now(UTC)
    began = time.perf_counter()
    facts = machine.record()
    cores = machine.cores()
    measured: list[Series] = []
    for name in SERIES:
        if name in names:
            series = MEASURES[name](profile, cores, reporter)
            reporter.end(series)
            measured.append(series)
    by_name = {series.name: series.to_dict() for series in measured}
    return {
        "schema": SCHEMA,
        "profile": profile.name,
        "repeats": profile.repeats,
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - began, 3),
        "machine": {**facts, "load_average_after": machine.load_average()},
        "series": list(by_name.values()),
        "targets": targets.evaluate(by_name),
        "charts": [],
        "notes": notes(by_name),
    }


def notes(series: dict[str, dict[str, Any]]) -> list[str]:
    """Everything not measured, and why, in one list (the Markdown report and the summary show it)."""
    skipped: dict[tuple[str, str], list[str]] = {}
    for name, data in series.items():
        for item in data["skipped"]:
            skipped.setdefault((item["what"], item["reason"]), []).append(name)
    found = [
        f"{what} not measured in {', '.join(names)}: {reason}" for (what, reason), names in skipped.items()
    ]
    for name, data in series.items():
        for point in data["points"]:
            if point["error"]:
                found.append(f"{name}: {point['label']} FAILED: {point['error']}")
    return found


def failures(document: dict[str, Any]) -> tuple[int, int]:
    """(points with a wrong answer, points that failed otherwise)."""
    wrong = failed = 0
    for series in document["series"]:
        for point in series["points"]:
            if point["error"] and point["error"].startswith("wrong answer"):
                wrong += 1
            elif point["error"]:
                failed += 1
    return wrong, failed
