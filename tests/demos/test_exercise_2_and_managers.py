"""Exercise 2 (the note's list-slicing version next to the ranges version, with time and memory) and the
managers lesson (distribution by address and key, and what it lacks next to a broker)."""

from __future__ import annotations

import json
import sys

from tests.demos.helpers import demo, said

MB = 1024 * 1024


def test_the_faithful_version_adds_slices_of_a_real_list_and_times_like_the_note() -> None:
    result = demo("divide_and_conquer", "--only", "faithful", "--n", "100_003", "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["answer"] == outcome["expected"] == 100_003 * 100_004 // 2
    assert 0 < outcome["note_timer_s"] <= outcome["wall_s"]
    assert 0 < outcome["build_s"] < outcome["wall_s"]


def test_the_list_costs_memory_the_ranges_do_not() -> None:
    small, large = 2_000_000, 8_000_000
    result = demo(
        "divide_and_conquer", "--faithful-n", str(small), "--n", str(large), "--repeats", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = {(row["version"], row["n"]): row for row in json.loads(result.stdout.splitlines()[-1])}
    assert set(rows) == {("faithful", small), ("ranges", small), ("ranges", large)}
    assert all(row["verified"] for row in rows.values())
    # The list alone holds `small` int objects (all but 1..256 freshly allocated) in the parent.
    list_bytes = small * sys.getsizeof(10**6)
    assert rows[("faithful", small)]["tree_pss_mb"] > rows[("ranges", small)]["tree_pss_mb"] + list_bytes / MB
    # Ranges: four times the numbers, not four times the memory.
    assert rows[("ranges", large)]["tree_pss_mb"] < 1.5 * rows[("ranges", small)]["tree_pss_mb"]
    table = result.stdout
    assert "tree PSS" in table
    assert "parent RSS" in table


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
