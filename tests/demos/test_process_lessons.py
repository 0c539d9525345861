"""Lessons 1-4: start methods, the main guard, each IPC mechanism, the lock around output, shared state,
and the module-level counter trap — each proven by what the demo prints."""

from __future__ import annotations

import json
import re

import pytest

from tests.demos.helpers import demo, main_pid, said, tagged


def test_a_fork_child_sees_run_time_changes_and_a_spawn_child_re_imports_the_main_module() -> None:
    result = demo("start_methods", "--processes", "2", "--repeats", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    views = summary["views"]
    assert views["fork"] == {
        **views["fork"],
        "module": "__main__",
        "settings": "as changed by the parent at run time",
    }
    for method in ("spawn", "forkserver"):
        assert views[method]["module"] == "__mp_main__"
        assert views[method]["settings"] == "as set when the module was imported"
        # The re-import ran the module's top level in that child: it said so, with its own pid.
        imports = said(result.stdout, r"runs its top level, imported as '__mp_main__'")
        assert views[method]["pid"] in {line.pid for line, _ in imports}
    parent = main_pid(result.stdout)
    assert parent not in {view["pid"] for view in views.values()}
    assert set(summary["start_s"]) == {"fork", "spawn", "forkserver"}
    assert all(seconds > 0 for seconds in summary["start_s"].values())


def test_without_the_main_guard_a_spawned_child_is_refused_and_with_it_it_runs() -> None:
    result = demo("main_guard")
    assert result.returncode == 0, result.stderr
    unguarded, guarded = result.stdout.split("== with_guard.py")
    assert "the child exited with status 1" in unguarded
    assert "stderr: RuntimeError" in unguarded
    assert "finished its bootstrapping phase" in unguarded
    assert re.search(r"stdout: child pid \d+ says hello", guarded)
    assert "the child exited with status 0" in guarded


@pytest.mark.parametrize(
    ("module", "worker_says"),
    [
        ("ipc_pipe", r"^got chunk \d+ \[\d+, \d+\) from the pipe$"),
        ("ipc_queue", r"^took \d+ chunk\(s\) off the queue"),
        ("ipc_shared_memory", r"^wrote the partial of chunk \d+ .* into slot \d+"),
        ("ipc_socket", r"^connected from port \d+, got chunk \d+$"),
        ("ipc_semaphore", r"^got a permit \(\d+ downloading now\)"),
    ],
)
def test_each_ipc_carries_partials_between_real_processes_to_a_verified_answer(
    module: str, worker_says: str
) -> None:
    result = demo(module)
    assert result.returncode == 0, result.stderr
    parent = main_pid(result.stdout)
    workers = {line.pid for line, _ in said(result.stdout, worker_says)}
    assert workers, f"no worker said {worker_says!r}"
    assert parent not in workers
    assert said(result.stdout, r"^answer \d+, check \d+ .*: ✓ verified$")[0][0].pid == parent


def test_a_semaphore_never_lets_more_than_its_permits_in() -> None:
    result = demo("ipc_semaphore", "--workers", "6", "--permits", "2", "--latency", "0.02")
    assert result.returncode == 0, result.stderr
    counts = [int(match[1]) for _, match in said(result.stdout, r"^got a permit \((\d+) downloading now\)")]
    assert len(counts) == 6
    assert max(counts) <= 2
    ((_, peak),) = said(result.stdout, r"^at most (\d+) downloaded at once \(2 permits\)")
    assert 1 <= int(peak[1]) <= 2


def test_signals_notify_the_parent_from_each_worker_and_sigterm_stops_one_cleanly() -> None:
    result = demo("ipc_signal", "--workers", "3")
    assert result.returncode == 0, result.stderr
    notified = {int(match[1]) for _, match in said(result.stdout, r"^notified by pid (\d+)$")}
    finished = {line.pid for line, _ in said(result.stdout, r"^chunk \d+ done .* with SIGRTMIN$")}
    assert notified == finished
    assert len(notified) == 3
    ((stopped, _),) = said(result.stdout, r"^SIGTERM handled: stopped cleanly after item \d+ of 10000$")
    assert stopped.pid != main_pid(result.stdout)
    assert "the worker exited with status 0" in result.stdout


def line_is_whole(line: str) -> bool:
    return re.fullmatch(r"hello world \d+ from-pid-\d+", line) is not None


def test_with_the_lock_lines_never_interleave_and_without_it_they_do() -> None:
    result = demo("print_lock", "--processes", "4")
    assert result.returncode == 0, result.stderr
    without, with_lock = result.stdout.split("WITH a Lock")
    untagged = [line for line in with_lock.splitlines() if line.strip() and not tagged(line)]
    assert len(untagged) == 4
    assert all(line_is_whole(line) for line in untagged), untagged
    assert sorted(line.split()[2] for line in untagged) == ["0", "1", "2", "3"]
    mixed = [line for line in without.splitlines()[2:] if line.strip()]
    assert mixed, "the unlocked writers printed nothing"
    assert not any(line_is_whole(line) for line in mixed), mixed


def test_a_module_level_counter_reaches_10_in_each_child_and_a_shared_value_10_in_total() -> None:
    result = demo("counter_trap")
    assert result.returncode == 0, result.stderr
    own = said(result.stdout, r"^(Ping|Pong): said (\d+) times; my counter is (\d+)$")
    assert sorted((match[1], match[2], match[3]) for _, match in own) == [
        ("Ping", "10", "10"),
        ("Pong", "10", "10"),
    ]
    assert "the parent's counter is still 0" in result.stdout
    shared = said(result.stdout, r"^(Ping|Pong): said (\d+) times; the shared total is 10$")
    assert sum(int(match[2]) for _, match in shared) == 10
    assert len({line.pid for line, _ in own + shared}) == 4


def test_value_array_and_manager_carry_the_partials() -> None:
    result = demo("shared_state", "--workers", "2", "--n", "100000")
    assert result.returncode == 0, result.stderr
    assert "reads 3.1415927 and [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]" in result.stdout
    assert len(said(result.stdout, r"✓ verified$")) == 2
    ((_, server),) = said(result.stdout, r"^the manager's server process is pid (\d+)$")
    senders = {line.pid for line, _ in said(result.stdout, r"sent \d+ to the manager$")}
    assert len(senders) == 2
    assert int(server[1]) not in senders | {main_pid(result.stdout)}
