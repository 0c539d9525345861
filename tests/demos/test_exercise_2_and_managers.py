"""Exercise 2 (the note's list-slicing version next to the ranges version, with time and memory) and the
managers lesson (distribution by address and key, and what it lacks next to a broker)."""

from __future__ import annotations

import json
import sys

from demos.divide_and_conquer import PROCESSES
from tests.demos.helpers import demo, said

MB = 1_000_000


def test_the_faithful_version_adds_slices_of_a_real_list_and_times_like_the_note() -> None:
    result = demo("divide_and_conquer", "--only", "faithful", "--n", "100_003", "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["answer"] == outcome["expected"] == 100_003 * 100_004 // 2
    assert 0 < outcome["note_timer_s"] <= outcome["wall_s"]
    assert 0 < outcome["build_s"] < outcome["wall_s"]


def test_the_list_costs_memory_the_ranges_do_not() -> None:
    """Peaks are the kernel's high-water marks (`conquer.peak_rss`), read after every worker was waited
    for: exact, not sampled, so a 0.1 s run cannot slip between two looks."""
    small, large = 2_000_000, 8_000_000
    result = demo(
        "divide_and_conquer", "--faithful-n", str(small), "--n", str(large), "--repeats", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = {(row["version"], row["n"]): row for row in json.loads(result.stdout.splitlines()[-1])}
    assert set(rows) == {("faithful", small), ("ranges", small), ("ranges", large)}
    assert all(row["verified"] for row in rows.values())
    int_bytes = sys.getsizeof(10**6)  # one int object past the cached 1..256; the list adds a pointer each
    # The list costs memory: its `small` int objects live in the parent. Checked against 20 runs here
    # (2 cores, load average 5.1-9.3 from other test suites): the parent's peak exceeded the ranges
    # parent's by 95.7-96.1 MB, against the 56 MB of int objects asserted.
    excess = rows[("faithful", small)]["parent_peak_bytes"] - rows[("ranges", small)]["parent_peak_bytes"]
    assert excess > small * int_bytes
    # The ranges do not: four times the numbers, and neither the parent's peak nor the largest worker's
    # grows by a quarter of what the extra numbers would cost one worker's chunk as a list (5.2 MB).
    # Checked against the same 20 runs: the parent's grew by -0.24 to +0.08 MB, the worker's by -0.12 to
    # +0.06 MB. A worker that turned its chunk into a list grew by 30.3 MB and failed here.
    chunk_as_list = (large - small) // PROCESSES * int_bytes
    for peak in ("parent_peak_bytes", "worker_peak_bytes"):
        growth = rows[("ranges", large)][peak] - rows[("ranges", small)][peak]
        assert growth < chunk_as_list / 4, f"{peak} grew by {growth / MB:.1f} MB with N"
    assert "parent peak" in result.stdout
    assert "worker peak" in result.stdout


def test_the_managers_lesson_runs_the_job_by_address_and_shows_what_a_broker_adds() -> None:
    result = demo("managers")
    assert result.returncode == 0, result.stderr
    assert len(said(result.stdout, r"✓ verified$")) == 2
    workers_seen = {
        int(match[1]) for _, match in said(result.stdout, r"^worker pid (\d+) on host \S+ ran chunks")
    }
    assert workers_seen
    assert "joining 127.0.0.1:" in result.stdout
    assert said(result.stdout, r"while it held the chunk: todo holds 0, done holds 0$")
    assert said(result.stdout, r"after the server died: \w+ — the 5 chunks died with it$")
    for lesson in ("redelivery", "persistence", "monitoring", "many producers"):
        assert said(result.stdout, rf"broker: {lesson}:")
