"""What a run's meter counts (`conquer.usage`), with real processes burning real CPU: the children a
run reaps, descendants that outlive it, the subtrees it must leave out, and the machine's counters
read from /proc/stat."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conquer import machine
from conquer.usage import Meter

#: CPU seconds each burner spends. Long against a tick (10 ms) and against what this process spends
#: meanwhile (it only waits on a pipe).
BURN_S = 0.3

#: A child that, for each line it reads, burns BURN_S of its own CPU time and answers with its total.
BURNER = f"""
import sys, time
for _ in sys.stdin:
    start = time.process_time()
    while time.process_time() - start < {BURN_S}:
        pass
    print(time.process_time(), flush=True)
"""


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.stdin:
            process.stdin.close()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def burn(process: subprocess.Popen[str]) -> float:
    """Have `process` burn BURN_S of CPU; its total CPU time so far."""
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    return float(process.stdout.readline())


def test_a_child_reaped_during_the_run_is_counted() -> None:
    meter = Meter()
    done = subprocess.run(
        [sys.executable, "-c", BURNER], input="go\n", capture_output=True, text=True, timeout=60, check=True
    )
    sample = meter.stop(0.0)
    assert sample.cpu_s is not None
    # The child's own account at its last line is a lower bound of what its reaping adds.
    assert sample.cpu_s >= float(done.stdout)


def test_a_descendant_alive_across_the_run_counts_only_what_it_spent_during_it(
    burner: subprocess.Popen[str],
) -> None:
    burn(burner)  # before the run: not the run's
    meter = Meter()
    burn(burner)
    sample = meter.stop(0.0)
    assert sample.cpu_s is not None
    # psutil reads the burner's CPU in ticks: within resolution_s of BURN_S, plus this process's waiting.
    assert BURN_S - sample.resolution_s <= sample.cpu_s < 2 * BURN_S


def test_a_descendant_that_exits_during_the_run_brings_only_its_time_in_the_run(
    burner: subprocess.Popen[str],
) -> None:
    burn(burner)
    meter = Meter()
    assert burner.stdin is not None
    burner.stdin.close()  # it exits without burning more; this process reaps it
    burner.wait(timeout=30)
    sample = meter.stop(0.0)
    assert sample.cpu_s is not None
    # Reaping adds its whole life (>= BURN_S) to this process's children; its time before is taken off.
    assert sample.cpu_s < BURN_S / 2


def test_an_excluded_subtree_is_other_load_not_the_runs(burner: subprocess.Popen[str]) -> None:
    meter = Meter(exclude=[burner.pid])
    burn(burner)
    sample = meter.stop(0.0)
    assert sample.cpu_s is not None
    assert sample.cpu_s < BURN_S / 2
    if sample.other_cpu_s is not None:  # on Linux: the machine's busy time shows the burner
        assert sample.other_cpu_s >= BURN_S - sample.resolution_s


def test_work_outside_the_tree_has_no_cpu_time_rather_than_a_guess() -> None:
    sample = Meter(inside=False).stop(0.0)
    assert sample.cpu_s is None
    assert sample.other_cpu_s is None


def steal_ticks() -> int:
    return int(Path("/proc/stat").read_text().split()[8])  # "cpu", user, ..., softirq, steal


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat: steal is None here")
def test_steal_is_the_proc_stat_counter_over_the_run() -> None:
    before = steal_ticks()
    meter = Meter()
    time.sleep(0.2)  # the run being metered: whatever the hypervisor takes meanwhile
    sample = meter.stop(0.2)
    after = steal_ticks()
    assert sample.steal_s is not None
    assert 0 <= sample.steal_s <= (after - before) * machine.tick_s() + 1e-9
    assert sample.window_s >= 0.2


def test_the_proc_stat_line_is_read_field_by_field(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    #            user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 999 50 4 6 7 11 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    clock = machine.cpu_clock(stat)
    assert clock is not None
    tick = machine.tick_s()
    assert clock.busy_s == pytest.approx((100 + 20 + 30 + 4 + 6) * tick)  # guest is inside user
    assert clock.steal_s == pytest.approx(7 * tick)
    assert machine.cpu_clock(tmp_path / "missing") is None
