"""The bank account's unforced race, on whichever build runs the tests (`make test-ft` runs it on the
free-threaded one): a bare `balance += 1` on as many threads as cores, counted per run.

With the GIL off the race happens by itself: measured on the 2-core VM at load 6-7, deposits were lost
in 9 of 20 runs of 2 threads x 100,000 (27-50 % of them); a run loses none when the two threads do not
run at once. So this asks for 20 runs and at least one with a loss: all 20 lossless would have
probability about 0.55^20 < 1e-5 at that rate. With the GIL on nothing is asserted about the count (rare
is not never), only that the demo names the build it ran on. With a Lock, nothing is lost on either."""

from __future__ import annotations

import re

from conquer import machine
from demos import bank_account
from tests.demos.helpers import demo

RUNS = 20


def test_with_a_lock_the_unforced_deposits_all_arrive() -> None:
    assert [bank_account.unforced(2, 20_000, locked=True) for _ in range(3)] == [0, 0, 0]


def test_the_unforced_race_is_reported_as_this_build_runs_it() -> None:
    result = demo("bank_account", "--runs", str(RUNS))
    assert result.returncode == 0, result.stderr
    threads = max(2, machine.cores())
    build = "the GIL on" if machine.gil_enabled() else "the GIL OFF (a free-threaded build)"
    assert f"{threads} threads x 100,000 deposits, {RUNS} runs, {build}" in result.stdout
    found = re.search(r"without a Lock: deposits lost per run \[([\d, ]+)\]", result.stdout)
    assert found, result.stdout
    lost = [int(count) for count in found.group(1).split(",")]
    assert len(lost) == RUNS
    assert f"with a Lock:    deposits lost per run {[0] * RUNS}" in result.stdout
    if not machine.gil_enabled():
        assert any(lost), "with the GIL off, no run of the bare `+=` lost a deposit"
        assert "lost by itself: with no GIL" in result.stdout
    else:
        assert ("none lost here: the GIL" in result.stdout) is not any(lost)
