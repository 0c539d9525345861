"""PNG charts of a bench run, drawn from the JSON document alone (matplotlib, the `bench` extra).

One chart per series (two for `cpu`: one per kind). Every chart shows medians with the runs' range as
error bars, and the line that gives the figures their meaning: the ideal speedup and the core count,
the latency limit, a target. Import this module only when charts are wanted: matplotlib takes a
second to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conquer.figures import speedup

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'conquer[bench]' (from a checkout: pip install -e '.[bench]')"

MB = 1_000_000


def available() -> bool:
    """Whether matplotlib can be imported (it is imported for real: a broken install counts as absent)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def subtitle(document: dict[str, Any]) -> str:
    facts = document["machine"]
    build = "free-threaded" if facts["free_threaded_build"] else "GIL"
    return (
        f"{facts['cores']} cores · {facts['implementation']} {facts['python']} ({build}) · "
        f"{document['profile']} run · median of {document['repeats']}, bars = range"
    )


def measured(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [point for point in points if point["median"] is not None]


def error_bars(points: list[dict[str, Any]], scale: float = 1.0) -> list[list[float]]:
    """[below, above] distances from each median to its min and max, for matplotlib's `yerr`."""
    return [
        [(point["median"] - point["min"]) * scale for point in points],
        [(point["max"] - point["median"]) * scale for point in points],
    ]


def legend_outside(axes: Axes, columns: int = 1) -> None:
    """Below the plot, where it cannot hide a line or a bar."""
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, ncol=columns)


def cpu(axes: Axes, series: dict[str, Any], kind: str) -> None:
    cores = series["parameters"]["cores"]
    points = [point for point in measured(series["points"]) if point["params"]["kind"] == kind]
    serial = next((point for point in points if point["params"]["executor"] == "serial"), None)
    counts = series["parameters"]["workers"]
    axes.plot(counts, [min(count, cores) for count in counts], "k--", label="ideal: min(W, cores)")
    axes.axvline(cores, color="grey", linestyle=":", label=f"{cores} cores")
    axes.axhline(1, color="grey", linewidth=0.8)
    markers = "osD^v<>px*h"
    labels = list(dict.fromkeys(point["label"] for point in points if point is not serial))
    for number, label in enumerate(labels):
        line = sorted((p for p in points if p["label"] == label), key=lambda p: p["params"]["workers"])
        if serial is None:
            continue
        base = serial["median"]
        # The speedups the table shows; the bars span the point's slowest to its fastest run.
        speedups = [p["derived"]["speedup"] for p in line]
        low = [s - (speedup(base, p["max"]) or s) for s, p in zip(speedups, line, strict=True)]
        high = [(speedup(base, p["min"]) or s) - s for s, p in zip(speedups, line, strict=True)]
        axes.errorbar(
            [p["params"]["workers"] for p in line],
            speedups,
            yerr=[low, high],
            marker=markers[number % len(markers)],
            capsize=3,
            label=label,
        )
    axes.set_xticks(counts)
    axes.set_xlabel("workers (W)")
    axes.set_ylabel("speedup over serial")
    n = series["parameters"][f"{kind}_n"]
    axes.set_title(f"{kind} 1..{n:_}: speedup over serial")
    legend_outside(axes, columns=4)


def builds(axes: Axes, series: dict[str, Any]) -> None:
    """sum's speedup over its own build's serial against W: a line per way and build, solid for a
    build that ran with the GIL off, dashed for one with it on."""
    cores = series["parameters"]["cores"]
    counts = series["parameters"]["workers"]
    points = [p for p in measured(series["points"]) if p["params"]["kind"] == "sum"]
    axes.plot(counts, [min(count, cores) for count in counts], "k:", label="ideal: min(W, cores)")
    axes.axhline(1, color="grey", linewidth=0.8)
    markers = "osD^v<>px*h"
    lines: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        if point["params"]["executor"] != "serial":
            way = point["label"].split(" ×")[0]
            lines.setdefault(f"{way} — {point['label'].split(' — ')[-1]}", []).append(point)
    for number, (label, line) in enumerate(lines.items()):
        line.sort(key=lambda p: p["params"]["workers"])
        gil_on = line[0]["params"]["interpreter"]["gil_enabled"]
        axes.plot(
            [p["params"]["workers"] for p in line],
            [p["derived"]["speedup"] for p in line],
            linestyle="--" if gil_on else "-",
            marker=markers[number % len(markers)],
            label=label,
        )
    axes.set_xticks(counts)
    axes.set_xlabel("workers (W): threads, processes, or the Celery pool's size")
    axes.set_ylabel("speedup over the same build's serial")
    axes.set_title(f"sum 1..{series['parameters']['sum_n']:_}: solid = GIL off, dashed = GIL on")
    legend_outside(axes, columns=2)


def ratios(axes: Axes, series: dict[str, Any]) -> None:
    points = measured(series["points"])
    labels = [point["label"] for point in points]
    axes.bar(labels, [p["median"] for p in points], yerr=error_bars(points), capsize=4, color="tab:blue")
    by_executor = {point["params"]["executor"]: point for point in points}
    if "serial" in by_executor:
        axes.axhline(
            by_executor["serial"]["median"] / 1.9, color="tab:green", linestyle="--", label="processes target"
        )
    if "processes" in by_executor:
        axes.axhline(
            by_executor["processes"]["median"] * 1.10, color="tab:red", linestyle=":", label="celery target"
        )
    for name, value in series["derived"].items():
        if value is not None:
            axes.plot([], [], " ", label=f"{name.replace('_', ' ')}: {value:.2f}×")
    parameters = series["parameters"]
    axes.set_ylabel("wall time (s)")
    axes.set_title(
        f"sum 1..{parameters['n']:_} in {parameters['chunks']} chunks, {parameters['workers']} workers"
    )
    axes.legend(fontsize=8)


def granularity(axes: Axes, series: dict[str, Any]) -> None:
    for executor, fit in series["derived"].items():
        points = sorted(
            (p for p in measured(series["points"]) if p["params"]["executor"] == executor),
            key=lambda p: p["params"]["chunks"],
        )
        if not points:
            continue
        per_chunk = fit.get("per_chunk_s")
        label = executor + (f": {per_chunk * 1e6:,.0f} µs per chunk" if per_chunk else "")
        chunks = [p["params"]["chunks"] for p in points]
        lines = axes.errorbar(chunks, [p["median"] for p in points], yerr=error_bars(points), marker="o",
                              capsize=3, label=label)  # fmt: skip
        if per_chunk and fit.get("fixed_s") is not None:
            fitted = fit["fit_chunks"]
            axes.plot(fitted, [fit["fixed_s"] + per_chunk * c for c in fitted], linestyle="--",
                      color=lines[0].get_color(), linewidth=1)  # fmt: skip
    axes.set_xscale("log", base=2)
    axes.set_xticks(series["parameters"]["chunks"], [str(c) for c in series["parameters"]["chunks"]])
    axes.set_yscale("log")
    axes.set_xlabel("chunks")
    axes.set_ylabel("wall time (s)")
    parameters = series["parameters"]
    axes.set_title(f"sum 1..{parameters['n']:_} on {parameters['workers']} workers: time against chunk count")
    axes.legend(fontsize=8)


def horizontal_bars(
    axes: Axes, points: list[dict[str, Any]], values: list[float], color: Any, text: Callable[[float], str]
) -> None:
    """One bar per point, top to bottom in the document's order, each labelled with its value."""
    bars = axes.barh([point["label"] for point in points], values, color=color)
    axes.bar_label(bars, labels=[text(value) for value in values], padding=3, fontsize=8)
    axes.margins(x=0.15)
    axes.invert_yaxis()


def io(axes: Axes, series: dict[str, Any]) -> None:
    points = [p for p in measured(series["points"]) if p["derived"].get("speedup")]
    horizontal_bars(axes, points, [p["derived"]["speedup"] for p in points], "tab:blue", "{:.1f}×".format)
    limit = series["derived"]["latency_limit_speedup"]
    axes.axvline(limit, color="tab:red", linestyle="--", label=f"latency limit {limit:g}× = n / ceil(n / W)")
    parameters = series["parameters"]
    axes.set_xlabel("speedup over serial")
    axes.set_title(
        f"download {parameters['n']} × {parameters['latency'] * 1000:g} ms, {parameters['workers']} workers"
    )
    legend_outside(axes)


def trivial(axes: Axes, series: dict[str, Any]) -> None:
    points = [p for p in measured(series["points"]) if p["derived"].get("chunks_per_s")]
    horizontal_bars(
        axes, points, [p["derived"]["chunks_per_s"] for p in points], "tab:purple", "{:,.0f}/s".format
    )
    axes.axvline(1500, color="tab:red", linestyle="--", label="celery target: 1,500 chunks/s")
    axes.set_xscale("log")
    axes.set_xlabel("chunks per second (log scale)")
    parameters = series["parameters"]
    axes.set_title(f"{parameters['chunks']} one-item chunks on {parameters['workers']} workers")
    legend_outside(axes)


def round_trip(axes: Axes, series: dict[str, Any]) -> None:
    points = measured(series["points"])

    def color(point: dict[str, Any]) -> str:
        tool = point["params"].get("tool")
        if tool:
            return "tab:orange" if tool == "redis-benchmark" else "tab:olive"
        return "tab:blue" if "mechanism" in point["params"] else "tab:red"

    horizontal_bars(
        axes, points, [p["median"] * 1e6 for p in points], [color(p) for p in points], "{:,.1f} µs".format
    )
    axes.set_xscale("log")
    axes.set_xlabel("one round trip (µs, log scale)")
    axes.set_title("in-host IPC (blue), Redis floor (orange: C client, olive: redis-py), Celery (red)")


def startup(axes: Axes, series: dict[str, Any]) -> None:
    methods = series["parameters"]["start_methods"]
    counts = series["parameters"]["workers"]
    width = 0.8 / max(len(methods), 1)
    for number, method in enumerate(methods):
        points = [p for p in measured(series["points"]) if p["params"]["start_method"] == method]
        axes.bar(
            [p["params"]["workers"] + (number - (len(methods) - 1) / 2) * width for p in points],
            [p["median"] * 1000 for p in points],
            width,
            yerr=error_bars(points, 1000),
            capsize=3,
            label=method,
        )
    axes.set_xticks(counts)
    axes.set_yscale("log")
    axes.set_xlabel("processes started (W)")
    axes.set_ylabel("ms until all run (log scale)")
    axes.set_title("time to start W processes, by start method")
    axes.legend(fontsize=8)


def memory(axes: Axes, series: dict[str, Any]) -> None:
    points = measured(series["points"])
    labels = [f"n = {p['params']['n']:,}" for p in points]
    positions = range(len(points))
    axes.bar([x - 0.2 for x in positions], [p["median"] / MB for p in points], 0.4,
             yerr=error_bars(points, 1 / MB), capsize=4, label="the tree's peak, at most")  # fmt: skip
    command = [(p["derived"].get("command_peak_rss_bytes") or 0) / MB for p in points]
    axes.bar([x + 0.2 for x in positions], command, 0.4, label="the command's own peak")
    axes.axhline(100, color="tab:red", linestyle="--", label="target: 100 MB")
    axes.set_xticks(list(positions), labels)
    axes.set_ylabel("peak memory (MB)")
    axes.set_title(f"conquer run sum N --on processes --workers {series['parameters']['workers']}")
    axes.legend(fontsize=8)


Draw = Callable[["Axes", dict[str, Any]], None]

CHARTS: list[tuple[str, str, str, Draw]] = [
    ("ratios", "ratios.png", "Target ratios", ratios),
    ("cpu", "cpu-sum.png", "CPU-bound scaling: sum", lambda axes, series: cpu(axes, series, "sum")),
    ("cpu", "cpu-primes.png", "CPU-bound scaling: primes", lambda axes, series: cpu(axes, series, "primes")),
    ("builds", "builds.png", "Free-threaded and GIL builds side by side", builds),
    ("granularity", "granularity.png", "Chunk granularity", granularity),
    ("io", "io.png", "I/O-bound download against the latency limit", io),
    ("trivial", "trivial.png", "Trivial-chunk throughput", trivial),
    ("round-trip", "round-trip.png", "One message's round trip", round_trip),
    ("startup", "startup.png", "Process start-up by start method", startup),
    ("memory", "memory.png", "Peak memory, flat in n", memory),
]


def render(document: dict[str, Any], directory: Path) -> list[dict[str, str]]:
    """Draw every chart whose series is in `document` into `directory`; return what was written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    from matplotlib import pyplot

    by_name = {series["name"]: series for series in document["series"]}
    written = []
    for name, file, title, draw in CHARTS:
        series = by_name.get(name)
        if series is None or not measured(series["points"]):
            continue
        figure: Figure = pyplot.figure(figsize=(9, 5.5), layout="constrained")
        try:
            draw(figure.add_subplot(), series)
            figure.suptitle(f"{title}\n{subtitle(document)}", fontsize=10)
            figure.savefig(directory / file, dpi=110)
        finally:
            pyplot.close(figure)
        written.append({"series": name, "file": file, "title": title})
    return written


def recovery(axes: Axes, series: dict[str, Any]) -> None:
    """The recovery cost (faulted wall − the fault-free median) per fault: a bar per broker, the runs'
    range as error bars."""
    faults = series["parameters"]["faults"]
    brokers = [
        broker
        for broker in series["parameters"]["brokers"]
        if any(p["params"]["broker"] == broker for p in series["points"])
    ]
    width = 0.8 / max(len(brokers), 1)
    for number, broker in enumerate(brokers):
        shown = [
            (position, point["derived"])
            for position, fault in enumerate(faults)
            for point in series["points"]
            if point["params"]["broker"] == broker
            and point["params"]["fault"] == fault
            and point["median"] is not None
            and point["derived"].get("recovery_cost_s") is not None
        ]
        if not shown:
            continue
        costs = [derived["recovery_cost_s"] for _, derived in shown]
        below = [
            cost - derived["recovery_cost_min_s"] for cost, (_, derived) in zip(costs, shown, strict=True)
        ]
        above = [
            derived["recovery_cost_max_s"] - cost for cost, (_, derived) in zip(costs, shown, strict=True)
        ]
        free = shown[0][1]["fault_free_wall_s"]
        bars = axes.bar(
            [position + (number - (len(brokers) - 1) / 2) * width for position, _ in shown],
            costs,
            width,
            yerr=[below, above],
            capsize=4,
            label=f"{broker} (the job alone: {free:.1f} s)",
        )
        axes.bar_label(bars, labels=[f"{cost:.1f} s" for cost in costs], padding=2, fontsize=8)
    axes.axhline(0, color="grey", linewidth=0.8)
    said = {p["params"]["fault"]: p["label"].partition(": ")[2] for p in series["points"]}
    axes.set_xticks(range(len(faults)), [said.get(fault, fault) for fault in faults])
    axes.set_ylabel("recovery cost (s): faulted wall − fault-free median")
    parameters = series["parameters"]
    axes.set_title(
        f"download {parameters['n']} × {parameters['latency']:g} s in {parameters['chunks']} chunks on "
        f"{parameters['hosts']} hosts, each fault mid-chunk"
    )
    axes.legend(fontsize=8)


CHARTS.append(("recovery", "recovery.png", "Recovery cost per fault and broker", recovery))
