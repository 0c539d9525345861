"""Runs the chosen series of `conquer bench` and assembles the one JSON document they make up."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from conquer import machine
from conquer.bench import (
    NAMED_ONLY,
    SCHEMA,
    SERIES,
    builds,
    cpu,
    granularity,
    io_bound,
    memory,
    ratios,
    recovery,
    roundtrip,
    startup,
    targets,
    throughput,
)
from conquer.bench.context import Context
from conquer.bench.points import Series
from conquer.bench.profiles import Profile
from conquer.bench.reporter import Reporter
from conquer.interpreters import Interpreter
from conquer.rounds import Deployments

Measure = Callable[[Context], Series]

MEASURES: dict[str, Measure] = {
    "ratios": ratios.measure,
    "cpu": cpu.measure,
    "builds": builds.measure,
    "granularity": granularity.measure,
    "io": io_bound.measure,
    "trivial": throughput.measure,
    "round-trip": roundtrip.measure,
    "startup": startup.measure,
    "memory": memory.measure,
    "recovery": recovery.measure,
}
assert tuple(MEASURES) == SERIES + NAMED_ONLY, "conquer.bench.SERIES lists the series in the order they run"


class Run:
    """One bench run: the series measured so far, and the document they make up — complete, or, after
    Ctrl-C, as far as it got (a quarter of an hour of measuring is not thrown away)."""

    def __init__(self, profile: Profile, command: str, pythons: tuple[Interpreter, ...] = ()) -> None:
        self.profile = profile
        self.pythons = pythons
        self.command = command
        self.started = datetime.now(UTC)
        self.began = time.perf_counter()
        self.facts = machine.record()
        self.measured: list[Series] = []
        self.running: str | None = None

    def measure(self, names: Sequence[str], reporter: Reporter) -> None:
        """Measure each series in `names`, in SERIES order (then NAMED_ONLY's)."""
        with Deployments() as deployments:
            context = Context(self.profile, machine.cores(), reporter, deployments, self.pythons)
            for name, measure in MEASURES.items():
                if name in names:
                    self.running = name
                    series = measure(context)
                    reporter.end(series)
                    self.measured.append(series)
        self.running = None

    def document(self) -> dict[str, Any]:
        by_name = {series.name: series.to_dict() for series in self.measured}
        found = notes(by_name)
        if self.running is not None:
            found.insert(
                0, f"interrupted while measuring {self.running}: it and the series after it are missing"
            )
        return {
            "schema": SCHEMA,
            "profile": self.profile.name,
            "repeats": self.profile.repeats,
            "command": self.command,
            "complete": self.running is None,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - self.began, 3),
            "machine": {**self.facts, "load_average_after": machine.load_average()},
            "series": list(by_name.values()),
            "targets": targets.evaluate(by_name),
            "charts": [],
            "notes": found,
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
