"""Lesson 5: a Thread subclass, daemon threads, and the bank account that loses deposits without a Lock."""

from __future__ import annotations

from demos import bank_account
from tests.demos.helpers import demo, said, tagged


def test_without_the_lock_every_deposit_but_one_is_lost() -> None:
    account = bank_account.deposit_all(100, locked=False)
    assert account.reads == [0] * 100, "every depositor read before any wrote"
    assert account.balance == 1


def test_with_the_lock_the_balance_is_exactly_the_number_of_deposits() -> None:
    account = bank_account.deposit_all(100, locked=True)
    assert account.balance == 100
    assert sorted(account.reads) == list(range(100)), "each deposit read the one before it"


def test_the_bank_account_demo_says_so() -> None:
    result = demo("bank_account")
    assert result.returncode == 0, result.stderr
    assert "balance 1, expected 100: 99 deposit(s) lost" in result.stdout
    assert "balance 100, expected 100: 0 deposit(s) lost" in result.stdout


def test_thread_subclass_runs_each_chunk_in_its_own_named_thread_of_one_process() -> None:
    result = demo("thread_subclass", "--threads", "3", "--items", "2", "--latency", "0.01")
    assert result.returncode == 0, result.stderr
    received = said(result.stdout, r"^received \d+ bytes$")
    assert sorted(line.thread for line, _ in received) == ["downloader-0", "downloader-1", "downloader-2"]
    assert len({line.pid for line in tagged(result.stdout)}) == 1
    assert "✓ verified" in result.stdout


def test_setting_daemon_after_start_raises_runtime_error() -> None:
    result = demo("daemon_threads")
    assert result.returncode == 0, result.stderr
    assert said(
        result.stdout, r"after start\(\) raised RuntimeError: cannot set daemon status of active thread"
    )
    views = {match[1]: match[2] for _, match in said(result.stdout, r"^(\S+): daemon = (True|False)$")}
    assert views == {"made-by-main": "False", "a-daemon": "True", "made-by-a-daemon": "True"}


def test_a_daemon_thread_dies_with_the_main_thread_and_its_finally_never_runs() -> None:
    result = demo("daemon_threads", "--child", "daemon")
    assert result.returncode == 0, result.stderr
    lines = tagged(result.stdout)
    assert any(line.thread == "daemon-ticker" and line.text == "tick 1" for line in lines)
    assert not said(result.stdout, "finished its work|finally block ran")


def test_the_interpreter_waits_for_a_non_daemon_thread() -> None:
    result = demo("daemon_threads", "--child", "non-daemon")
    assert result.returncode == 0, result.stderr
    texts = [line.text for line in tagged(result.stdout)]
    returns = texts.index("the main thread returns now")
    assert texts.index("finished its work") > returns
    assert texts[-1] == "its finally block ran"
