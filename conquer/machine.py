"""Facts about the machine a measurement ran on, recorded next to every figure."""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from pathlib import Path
from typing import Any


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
        "platform": platform.platform(),
        "default_start_method": default_start_method(),
    }


def describe() -> str:
    info = facts()
    gil = "GIL on" if info["gil_enabled"] else "free-threaded, GIL off"
    return (
        f"{info['cores']} cores ({info['cpu']}), {info['implementation']} {info['python']} "
        f"({gil}), {info['platform']}"
    )
