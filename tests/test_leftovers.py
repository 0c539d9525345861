"""The leftover check of tests/conftest.py can fail: a process orphaned by a subprocess — what a
`conquer` that forgot a worker would leave — comes back to the test process (a child subreaper), is
reported as left behind, and is reaped once it dies."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from tests.conftest import SUBREAPER, kill_all, wait_until, workers_alive

#: A parent that starts a child meant to outlive it, prints the child's pid and exits without waiting:
#: the child is orphaned.
ORPHANING_PARENT = """
import subprocess, sys
quiet = subprocess.DEVNULL  # not our stdout: the caller waits for it to close
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdout=quiet, stderr=quiet)
print(child.pid)
"""


def test_a_process_orphaned_by_a_subprocess_comes_back_and_is_seen(request: pytest.FixtureRequest) -> None:
    if not request.config.stash[SUBREAPER]:
        pytest.skip("no child subreaper on this OS: an orphan goes to init, out of the tests' sight")
    parent = subprocess.run(
        [sys.executable, "-c", ORPHANING_PARENT], capture_output=True, text=True, timeout=60, check=True
    )
    orphan = psutil.Process(int(parent.stdout))
    try:
        assert orphan.ppid() == os.getpid()  # reparented here, not to init
        assert orphan.pid in {process.pid for process in workers_alive()}
    finally:
        kill_all([orphan])
    # Dead, it is a zombie of this process until reaped: the check reaps it, and no longer lists it.
    wait_until(lambda: orphan.pid not in {p.pid for p in workers_alive()}, 5, "the orphan is still listed")
    assert not psutil.pid_exists(orphan.pid)
