"""`make soak` runs the tests K times whatever fails, and names each test that failed with the number
of runs it failed in. Run here on a made-up test file that fails only on its second run: a flaky test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLAKY = """
from pathlib import Path

COUNTER = Path(__file__).with_name("runs")


def test_fails_on_the_second_run_only() -> None:
    runs = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(runs))
    assert runs != 2


def test_always_passes() -> None:
    pass
"""


def test_soak_runs_every_time_and_names_the_flaky_test(tmp_path: Path) -> None:
    tests = tmp_path / "flaky"
    tests.mkdir()
    (tests / "test_flaky.py").write_text(FLAKY)
    logs = tmp_path / "logs"
    # STAMP= : no install step (this interpreter's virtualenv is the one to use, as it is).
    variables = ["K=3", "STAMP=", f"BIN={Path(sys.executable).parent}", f"SOAK_ARGS={tests}"]
    result = subprocess.run(
        ["make", "--no-print-directory", "soak", *variables, f"SOAK_LOGS={logs}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    lines = result.stdout.splitlines()
    verdicts = [line.split(" — ")[0] for line in lines if line.startswith("soak run ")]
    assert verdicts == ["soak run 1/3: passed", "soak run 2/3: FAILED (exit 1)", "soak run 3/3: passed"]
    assert "soak: 1 of 3 run(s) failed; runs each test failed in:" in lines
    failed = [line.split() for line in lines if "FAILED " in line and not line.startswith("soak")]
    assert [(count, name.rpartition("::")[2]) for count, _, name in failed] == [
        ("1", "test_fails_on_the_second_run_only")
    ]
    assert sorted(path.name for path in logs.iterdir()) == ["run-1.log", "run-2.log", "run-3.log"]
