"""The issues' performance targets, judged from a bench run: met, missed (by how much), or not measured.

Each target names the series and figure it is read from, and whether the run measured the target's own
job (`conditions_match`): a quick run measures smaller jobs, so its statuses are indicative only. A
figure read from a flagged point (impossible, disturbed, or over a disturbed baseline: see
`conquer.figures`) is `flagged`, never met or missed: the flags say why and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conquer import figures
from conquer.bench import profiles

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    issue: int
    statement: str
    comparison: str  # ">=" or "<="
    threshold: float
    unit: str
    series: str
    #: Reads the figure from the run's series (by name); None when it was not measured.
    read: Callable[[dict[str, dict[str, Any]]], float | None]
    #: True when the series measured the target's own job.
    matches: Callable[[dict[str, Any]], bool]
    #: The points the figure is computed from: their flags are the figure's.
    depends: Callable[[dict[str, dict[str, Any]]], list[dict[str, Any]]]
    note: str = ""
    #: Which of those points' flags apply (a ratio of two wall times has no speedup limit).
    flag_kinds: tuple[str, ...] = (figures.IMPOSSIBLE, figures.DISTURBED, figures.BASELINE)


def point_figure(series: dict[str, Any] | None, figure: str, **params: Any) -> float | None:
    """`figure` ("median" or a derived key) of the first point in `series` whose params match."""
    for point in points(series, **params)[:1]:
        value = point["median"] if figure == "median" else point["derived"].get(figure)
        return float(value) if value is not None else None
    return None


def points(series: dict[str, Any] | None, **params: Any) -> list[dict[str, Any]]:
    """The points of `series` whose params include all of `params` (a param a point lacks is None:
    `broker=None` is celery's default deployment, also in runs from before points named a broker)."""
    return [
        point
        for point in (series or {}).get("points", [])
        if all(point["params"].get(key) == value for key, value in params.items())
    ]


def largest_run(series: dict[str, Any] | None) -> list[dict[str, Any]]:
    measured = [point for point in (series or {}).get("points", []) if point["median"] is not None]
    return [max(measured, key=lambda point: point["params"]["n"])] if measured else []


def derived(series: dict[str, Any] | None, figure: str) -> float | None:
    value = (series or {}).get("derived", {}).get(figure)
    return float(value) if value is not None else None


def largest_run_megabytes(series: dict[str, Any] | None) -> float | None:
    """Median bound on the tree's peak, in MB, of the memory point with the largest n."""
    found = largest_run(series)
    return float(found[0]["median"]) / MB if found else None


def io_matches(parameters: dict[str, Any]) -> bool:
    return (
        parameters.get("n") == profiles.TARGET_IO_ITEMS
        and parameters.get("chunks") == profiles.TARGET_IO_ITEMS
        and parameters.get("latency") == profiles.TARGET_IO_LATENCY
        and parameters.get("workers") == profiles.TARGET_IO_WORKERS
    )


def ratio_matches(parameters: dict[str, Any]) -> bool:
    return parameters.get("n") == profiles.TARGET_SUM_N and parameters.get("chunks") == profiles.TARGET_CHUNKS


IO_NOTE = (
    "100 one-item chunks on 32 workers need ceil(100/32) = 4 rounds of 0.1 s, so no executor can beat "
    "10 s / 0.4 s = 25× serial: this target equals the latency limit and is met only by an executor "
    "with no overhead at all; read the figure as a fraction of the limit."
)

TARGETS = (
    Target(
        "processes-speedup-sum",
        2,
        "processes >= 1.9× serial on sum 10^8 (16 chunks, as many workers as cores)",
        ">=",
        1.9,
        "×",
        "ratios",
        lambda series: derived(series.get("ratios"), "processes_speedup"),
        ratio_matches,
        lambda series: points(series.get("ratios"), executor="processes"),
    ),
    Target(
        "celery-over-processes-sum",
        3,
        "celery wall time <= 1.10× processes' on sum 10^8 (16 chunks, as many workers as cores)",
        "<=",
        1.10,
        "×",
        "ratios",
        lambda series: derived(series.get("ratios"), "celery_over_processes"),
        ratio_matches,
        lambda series: [
            *points(series.get("ratios"), executor="celery", broker=None),
            *points(series.get("ratios"), executor="processes"),
        ],
        flag_kinds=(figures.DISTURBED,),
    ),
    Target(
        "celery-trivial-throughput",
        3,
        "celery moves >= 1,500 trivial chunks/s (2,000 one-item chunks)",
        ">=",
        1500,
        "chunks/s",
        "trivial",
        lambda series: point_figure(series.get("trivial"), "chunks_per_s", executor="celery", broker=None),
        lambda parameters: parameters.get("chunks") == profiles.TARGET_TRIVIAL_CHUNKS,
        lambda series: points(series.get("trivial"), executor="celery", broker=None),
    ),
    Target(
        "threads-download-speedup",
        2,
        "threads >= 25× serial on download 100 × 100 ms with 32 workers",
        ">=",
        25,
        "×",
        "io",
        lambda series: point_figure(series.get("io"), "speedup", executor="threads"),
        io_matches,
        lambda series: points(series.get("io"), executor="threads"),
        IO_NOTE,
    ),
    Target(
        "asyncio-download-speedup",
        2,
        "asyncio >= 25× serial on download 100 × 100 ms with 32 workers",
        ">=",
        25,
        "×",
        "io",
        lambda series: point_figure(series.get("io"), "speedup", executor="asyncio"),
        io_matches,
        lambda series: points(series.get("io"), executor="asyncio"),
        IO_NOTE,
    ),
    Target(
        "processes-peak-memory",
        2,
        "peak memory of `conquer run sum 10^9 --on processes` (command + workers, at most) <= 100 MB",
        "<=",
        100,
        "MB",
        "memory",
        lambda series: largest_run_megabytes(series.get("memory")),
        lambda parameters: profiles.TARGET_MEMORY_N in parameters.get("n", []),
        lambda series: largest_run(series.get("memory")),
        "The memory figure is an upper bound from the kernel's per-process peaks of RSS: the "
        "command's peak + forked workers × the largest worker's peak. It counts pages shared after fork "
        "once per process, and peaks that need not coincide.",
    ),
    Target(
        "processes-memory-flat",
        2,
        "peak memory of processes flat in n (the larger n within 1.10× of the smaller)",
        "<=",
        1.10,
        "×",
        "memory",
        lambda series: derived(series.get("memory"), "growth"),
        lambda parameters: profiles.TARGET_MEMORY_N in parameters.get("n", []),
        lambda series: points(series.get("memory")),
    ),
)


def judge(
    value: float | None, comparison: str, threshold: float, flagged: bool = False
) -> tuple[str, float | None]:
    """("met" | "missed" | "flagged" | "not measured", shortfall as a fraction of the threshold). A
    flagged figure keeps its shortfall (what it would be), but is neither met nor missed."""
    if value is None:
        return "not measured", None
    met = value >= threshold if comparison == ">=" else value <= threshold
    gap = 0.0 if met else (threshold - value if comparison == ">=" else value - threshold) / threshold
    if flagged:
        return "flagged", gap
    return ("met", gap) if met else ("missed", gap)


def summary(
    value: float | None, target: Target, status: str, shortfall: float | None, flags: list[dict[str, str]]
) -> str:
    if value is None:
        return "not measured"
    figure = f"{value:,.2f} {target.unit}" if target.unit != "×" else f"{value:.2f}×"
    wanted = f"{target.comparison} {target.threshold:,g}{'×' if target.unit == '×' else ' ' + target.unit}"
    outcome = "met" if not shortfall else f"missed by {shortfall:.1%}"
    if status == "flagged":
        return f"{figure} (target {wanted}): flagged, not judged (as measured: {outcome}; {where(flags)})"
    return f"{figure} (target {wanted}): {outcome}"


def where(flags: list[dict[str, str]]) -> str:
    """Target flags by point: `processes/queue/fork: disturbed (spread 12%); baseline`."""
    by_point: dict[str, list[dict[str, str]]] = {}
    for flag in flags:
        by_point.setdefault(flag["point"], []).append(flag)
    return "; ".join(f"{point}: {figures.cell(found)}" for point, found in by_point.items())


def flags_of(target: Target, series: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The flags of the points `target`'s figure comes from, each naming its point."""
    return [
        {"point": point["label"], **flag}
        for point in target.depends(series)
        for flag in point.get("flags", [])
        if flag["flag"] in target.flag_kinds
    ]


def evaluate(series: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target's status from a run's series (keyed by name)."""
    results = []
    for target in TARGETS:
        source = series.get(target.series)
        value = target.read(series) if source is not None else None
        flags = flags_of(target, series) if value is not None else []
        status, shortfall = judge(value, target.comparison, target.threshold, bool(flags))
        reason = None
        if source is None:
            reason = f"series {target.series!r} was not run"
        elif value is None:
            skipped = "; ".join(item["reason"] for item in source.get("skipped", []))
            reason = skipped or "its point failed or was not measured"
        results.append(
            {
                "id": target.id,
                "issue": target.issue,
                "statement": target.statement,
                "comparison": target.comparison,
                "threshold": target.threshold,
                "unit": target.unit,
                "series": target.series,
                "value": value,
                "status": status,
                "shortfall": shortfall,
                "summary": summary(value, target, status, shortfall, flags),
                "flags": flags,
                "conditions_match": source is not None and target.matches(source.get("parameters", {})),
                "reason": reason,
                "note": target.note or None,
            }
        )
    return results
