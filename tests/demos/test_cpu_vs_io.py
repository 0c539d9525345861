"""Lesson 7: the CPU- vs I/O-bound table is computed, complete and verified; the GIL state is named,
free-threaded builds included. (The speedups themselves are benchmarks, reported in the README.)"""

from __future__ import annotations

import json

from demos.cpu_vs_io import EXECUTORS, Gil
from tests.demos.helpers import demo


def test_the_table_has_every_executor_for_both_workloads() -> None:
    result = demo(
        "cpu_vs_io", "--n", "200000", "--items", "8", "--latency", "0.01", "--repeats", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    cpu, io = figures["rows"].values()
    assert list(cpu) == list(io) == list(EXECUTORS)
    assert "CPU-bound and would block its event loop" in cpu["asyncio"]
    assert all(isinstance(io[name], float) and io[name] > 0 for name in EXECUTORS)
    assert all(isinstance(cpu[name], float) and cpu[name] > 0 for name in ("serial", "threads", "processes"))
    cores = figures["machine"]["cores"]
    assert list(figures["thread_scaling"]) == [str(count) for count in range(1, cores + 1)]
    assert figures["gil"]["enabled"] is figures["machine"]["gil_enabled"]
    assert "the GIL lets one compute at a time" in result.stdout or "no GIL" in result.stdout


def test_each_gil_state_is_named() -> None:
    assert "with the GIL" in Gil(free_threaded_build=False, enabled=True).describe()
    assert "GIL OFF" in Gil(free_threaded_build=True, enabled=False).describe()
    assert "switched back on" in Gil(free_threaded_build=True, enabled=True).describe()


def test_this_interpreter_is_described_as_it_is() -> None:
    here = Gil.here()
    result = demo("cpu_vs_io", "--n", "1000", "--items", "2", "--latency", "0", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert f"this interpreter: {here.describe()}" in result.stdout
