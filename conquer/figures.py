"""How a timed row is judged, in one place for `conquer compare` and `conquer bench`: its speedup, its
efficiency, the most speedup its job allows, and the flags that say when a figure cannot be taken at
its word — each flag with what to do about it.

- **impossible**: the speedup is above the most the job allows — min(workers, cores, chunks) for
  CPU-bound work; for I/O-bound work the latency limit (no W workers can wait less than the fewest
  waits one of them must make). Never a real result: the serial baseline was slowed, or noise.
- **disturbed**: something other than the job moved the row's figure — the hypervisor took CPU time
  (steal), other processes used the CPUs, or the row's own runs disagree (spread).
- **baseline**: the row's speedup divides by a serial baseline that is itself disturbed, so the
  speedup is wrong by as much as the baseline is, whatever the row's own runs say. Under several
  interpreters, each build's rows are judged against their own build's serial, and a speedup over
  the GIL build's serial is flagged when that run is disturbed.

The thresholds, and why these:

- `SPREAD_MAX` 10 %: the issues state their targets to ±10 % (Celery <= 1.10× processes; two bench
  runs must agree within ±10 %). A row whose own runs differ by more cannot be placed that finely.
- `STEAL_MAX` 5 % and `OTHER_CPU_MAX` 5 % of the CPU time the machine had during the row's runs
  (cores × wall): a job that keeps every core busy loses about that share of its CPU, so above half
  of the ±10 % the figure could be the disturbance rather than the executor. Judged on the smallest
  share the tick counters allow (the share minus the counters' `resolution_s`), so a short run is
  never flagged for a tick's rounding.
- The load average is recorded but not judged: it trails by a minute and counts the run's own workers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from conquer.usage import Sample
from tasks import Job

SPREAD_MAX = 0.10
STEAL_MAX = 0.05
OTHER_CPU_MAX = 0.05

THRESHOLDS = {"spread": SPREAD_MAX, "steal_share": STEAL_MAX, "other_cpu_share": OTHER_CPU_MAX}

IMPOSSIBLE, DISTURBED, BASELINE = "impossible", "disturbed", "baseline"
#: The cause of a `baseline` flag on a speedup over the GIL build's serial (`compare --python`): an
#: impossible or baseline flag on a row's own speedup says nothing of that one, and vice versa.
GIL_SERIAL = "GIL serial"

RERUN_QUIETER = "rerun on a quieter machine (stop other work, or wait for the host's neighbours)"
MORE_REPEATS = "rerun with more repeats (--repeats) on a quieter machine"


@dataclass(frozen=True, slots=True)
class Flag:
    flag: str
    #: What raised it: "speedup", "steal", "other load", "spread" or "baseline".
    cause: str
    #: The figure that raised it, short (e.g. "35%", "2.36× > 2×").
    measured: str
    #: The measured reason in a sentence, with the threshold.
    why: str
    #: What to do about it.
    advice: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def cell(flags: Sequence[dict[str, str]]) -> str:
    """A row's flags as a table cell, e.g. `impossible (2.36× > 2×), baseline` or `disturbed (other
    load 35%, spread 12%)` (a baseline's own row says why it is disturbed), `baseline (GIL serial)`
    for a speedup over the GIL build's serial; "—" for none."""
    grouped: dict[str, list[str]] = {}
    for flag in flags:
        own = flag["cause"] in (flag["flag"], "speedup")
        # A speedup over another build's serial names it: `baseline (GIL serial)`.
        name = flag["flag"] if own or flag["flag"] != BASELINE else f"{BASELINE} ({flag['cause']})"
        grouped.setdefault(name, []).append(
            flag["measured"] if own else f"{flag['cause']} {flag['measured']}"
        )
    shown = [
        name if name.startswith(BASELINE) else f"{name} ({', '.join(details)})"
        for name, details in grouped.items()
    ]
    return ", ".join(shown) or "—"


def legend(flags: Sequence[dict[str, str]]) -> list[str]:
    """One line per kind of flag present and what to do, e.g. `disturbed (other load, spread): ...`."""
    causes: dict[tuple[str, str], list[str]] = {}
    for flag in flags:
        found = causes.setdefault((flag["flag"], flag["advice"]), [])
        if flag["cause"] not in found and flag["cause"] not in (flag["flag"], "speedup"):
            found.append(flag["cause"])
    lines = []
    for (name, advice), found in causes.items():
        what = f"{name} ({', '.join(found)})" if found else name
        lines.append(f"{what}: {advice}")
    return lines


def speedup(baseline_s: float | None, wall_s: float | None) -> float | None:
    """How many times faster than the baseline: baseline_s / wall_s; None if either is missing."""
    return baseline_s / wall_s if baseline_s and wall_s else None


def efficiency(job: Job, value: float | None, cores: int) -> float | None:
    """speedup / cores for CPU-bound work; None for I/O-bound work, whose speedup is not bounded by
    the cores (waiting takes none): there the share of the latency limit says how good it is."""
    return value / cores if value and not job.spec.io_bound else None


@dataclass(frozen=True, slots=True)
class Limit:
    """The most speedup over serial a job allows `workers` workers on `cores` cores, and why."""

    value: float
    why: str


def speedup_limit(job: Job, workers: int, cores: int) -> Limit:
    if job.spec.io_bound and job.latency > 0:
        # Serial waits n latencies. W workers: one of them gets at least ceil(chunks / W) chunks, so
        # waits at least as long as that many of the smallest chunks; and no less than the largest chunk
        # or an even share n / W.
        base, longer = divmod(job.n, job.chunks)
        least = math.ceil(job.chunks / workers)
        smallest = least * base + max(0, least - (job.chunks - longer))
        waits = max(base + (1 if longer else 0), job.n / workers, smallest)
        return Limit(job.n / waits, f"the latency limit of {job.chunks} chunks on {workers} workers")
    value = min(workers, cores, job.chunks)
    return Limit(
        float(value), f"the most {workers} worker(s) on {cores} cores can give with {job.chunks} chunks"
    )


@dataclass(frozen=True, slots=True)
class Disturbance:
    """Over all of a row's runs: the shares of the machine's CPU time (cores × the metered windows)
    stolen and used by others, the counters' rounding as the same kind of share, and the spread of
    the runs' figures."""

    steal_share: float | None
    other_cpu_share: float | None
    resolution_share: float | None
    spread: float | None

    def to_dict(self) -> dict[str, float | None]:
        # Unrounded: a reader must reach the same flags from these figures as the judge did.
        return asdict(self)


def median_of(values: Sequence[float | None]) -> float | None:
    """The median, or None when any value is missing (a figure made of some runs only is no figure)."""
    if not values or any(value is None for value in values):
        return None
    return statistics.median(value for value in values if value is not None)


def spread(figures: Sequence[float]) -> float | None:
    """(max − min) / median of a row's figures; None with fewer than two (nothing to compare)."""
    if len(figures) < 2:
        return None
    median = statistics.median(figures)
    return (max(figures) - min(figures)) / median if median else None


def disturbance(figures: Sequence[float], runs: Sequence[Sample], cores: int) -> Disturbance:
    """`figures`: the row's measured values (its spread); `runs`: what each run's Meter saw."""
    capacity = cores * sum(run.window_s for run in runs)

    def share(values: list[float | None]) -> float | None:
        if not runs or not capacity or any(value is None for value in values):
            return None
        return sum(value for value in values if value is not None) / capacity

    return Disturbance(
        share([run.steal_s for run in runs]),
        share([run.other_cpu_s for run in runs]),
        share([run.resolution_s for run in runs]),
        spread(figures),
    )


def disturbed(measured: Disturbance) -> list[Flag]:
    flags = []
    rounding = measured.resolution_share or 0.0
    for cause, share, limit, what in (
        ("steal", measured.steal_share, STEAL_MAX, "the hypervisor took (steal)"),
        ("other load", measured.other_cpu_share, OTHER_CPU_MAX, "other processes used"),
    ):
        if share is not None and share - rounding > limit:
            why = f"{what} {share:.0%} of the CPUs' time during its runs (flagged above {limit:.0%})"
            flags.append(Flag(DISTURBED, cause, f"{share:.0%}", why, RERUN_QUIETER))
    if measured.spread is not None and measured.spread > SPREAD_MAX:
        why = f"its runs differ by {measured.spread:.0%} of their median (flagged above {SPREAD_MAX:.0%})"
        flags.append(Flag(DISTURBED, "spread", f"{measured.spread:.0%}", why, MORE_REPEATS))
    return flags


def speedup_flags(value: float | None, limit: Limit, baseline: Sequence[Flag]) -> list[Flag]:
    """Flags on a speedup: above its limit, or over a disturbed baseline (`baseline`: its flags)."""
    flags = []
    if value is not None and value > limit.value:
        why = f"{value:.2f}× is more than {limit.value:g}×, {limit.why}"
        advice = "the serial baseline was slowed or the runs were noisy: " + MORE_REPEATS
        flags.append(Flag(IMPOSSIBLE, "speedup", f"{value:.2f}× > {limit.value:g}×", why, advice))
    return flags + baseline_flags(value, baseline)


def baseline_flags(value: float | None, baseline: Sequence[Flag], over: str = BASELINE) -> list[Flag]:
    """A `baseline` flag on a speedup over a disturbed serial run (`baseline`: that run's flags):
    the row's own serial (`over` "baseline"), or the GIL build's serial (`over` GIL_SERIAL)."""
    causes = ", ".join(sorted({flag.cause for flag in baseline if flag.flag == DISTURBED}))
    if value is None or not causes:
        return []
    serial = "a serial baseline" if over == BASELINE else "the GIL build's serial"
    why = f"its speedup is over {serial} that is itself disturbed ({causes})"
    advice = "every speedup of the run shares that baseline: " + RERUN_QUIETER
    return [Flag(BASELINE, over, causes, why, advice)]
