"""`conquer demo hosts`, through the real entry point: worker hosts as network namespaces, one cut off
or crashed mid-chunk — Celery on Redis (or on RabbitMQ, `--broker rabbitmq`) answers exactly with the
combine run once, managers fails at once naming the lost worker — and nothing of the hosts (or of the
private RabbitMQ node) left afterwards. Where it cannot run (not root, no `nft`, no
`rabbitmq-server`), one line and exit 10 (cannot run here)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile

import psutil
import pytest

from conquer import hosts, hosts_celery
from conquer.exitcodes import ExitCode
from tests.conftest import CONQUER, conquer
from workers.celery.brokers import rabbitmq

WHY_NOT = hosts.unavailable()
needs_hosts = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

#: Both parts: about 25 s for Celery (Redis's visibility timeout), 5 s for managers, plus start-ups.
DEMO_TIMEOUT_S = 240


def run_ids(output: str) -> set[str]:
    return set(re.findall(r"namespace conquer-([0-9a-f]+)-host\d", output))


@needs_hosts
@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_demo_shows_a_partition_survived_by_celery_and_fatal_to_managers() -> None:
    result = conquer("demo", "hosts", timeout=DEMO_TIMEOUT_S)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    text = result.stdout
    assert "built host1" in text
    assert re.search(r"link of host\d cut at t=\d+\.\d s", text)
    assert re.search(r"chunk \d back, run on host\d from t=\d+\.\d s", text)
    assert "✓ verified" in text
    assert "combine ran 1 time(s)" in text
    assert re.search(r"host\d's own result for chunk \d landed at t=\d+\.\d s: ignored", text)
    assert re.search(r"the run failed at t=\d+\.\d s .*: worker host1 lost: no heartbeat", text)
    assert len(run_ids(text)) == 2
    for run_id in run_ids(text):
        assert hosts.leftovers(run_id) == []


@needs_hosts
@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_demo_crashes_a_host_under_managers() -> None:
    result = conquer("demo", "hosts", "--fault", "crash", "--on", "managers", timeout=DEMO_TIMEOUT_S)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert re.search(
        r"the run failed at t=\d+\.\d s \(\d+\.\d s after the crash\): worker host1 lost", result.stdout
    )
    for run_id in run_ids(result.stdout):
        assert hosts.leftovers(run_id) == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_without_root_the_demo_says_so_in_one_line_and_exits_10() -> None:
    """In a user namespace of its own the demo's uid is not 0 (and it holds no capability here)."""
    result = subprocess.run(
        ["unshare", "--user", CONQUER, "demo", "hosts"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (ExitCode.CANNOT_RUN_HERE, "")
    assert (
        result.stderr
        == "cannot run here: several hosts need root (network namespaces, veth pairs, nftables)\n"
    )


def test_without_nft_the_demo_says_so_in_one_line_and_exits_10() -> None:
    path = os.pathsep.join(
        directory
        for directory in os.environ["PATH"].split(os.pathsep)
        if not (directory and os.path.exists(os.path.join(directory, "nft")))
    )
    result = subprocess.run(
        [CONQUER, "demo", "hosts"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": path},
    )
    assert (result.returncode, result.stdout) == (ExitCode.CANNOT_RUN_HERE, "")
    assert result.stderr.startswith("cannot run here: several hosts need ")
    assert result.stderr.count("\n") == 1


def rabbitmq_processes() -> list[str]:
    """Processes of a private RabbitMQ node the demo started (their HOME: its temporary directory)."""
    prefix = os.path.join(tempfile.gettempdir(), "conquer-hosts-")
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.environ().get("HOME", "").startswith(prefix):
                found.append(f"{process.pid} {process.info['name']}")
        except psutil.Error:
            pass
    return found


@needs_hosts
@pytest.mark.skipif(
    hosts_celery.unavailable("amqp") is not None, reason=hosts_celery.unavailable("amqp") or ""
)
@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_demo_on_rabbitmq_gets_a_cut_off_host_s_chunk_back_by_the_heartbeat() -> None:
    result = conquer("demo", "hosts", "--broker", "rabbitmq", "--on", "celery", timeout=DEMO_TIMEOUT_S)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    text = result.stdout
    assert "Celery on RabbitMQ, 2 worker hosts, one host's partition mid-chunk" in text
    assert re.search(r"RabbitMQ at amqp://conquer:\*\*\*@10\.\d+\.\d+\.1:\d+// \(the broker host\)", text)
    assert re.search(r"chunk \d back, run on host\d from t=\d+\.\d s \(\d+\.\d s after the fault: "
                     r"RabbitMQ closed the silent connection after two missed heartbeats", text)  # fmt: skip
    assert "✓ verified" in text
    assert "combine ran 1 time(s)" in text
    assert re.search(r"host\d's own result for chunk \d landed at t=\d+\.\d s: ignored", text)
    assert "hosts, links, RabbitMQ, Redis and workers removed" in text
    assert "the managers executor" not in text
    for run_id in run_ids(text):
        assert hosts.leftovers(run_id) == []
    assert rabbitmq_processes() == []


@pytest.mark.skipif(hosts.unavailable() is not None, reason=hosts.unavailable() or "")
def test_without_rabbitmq_server_the_rabbitmq_choice_says_so_in_one_line_and_exits_10() -> None:
    """In a mount namespace of its own, where the server scripts are hidden (an empty tmpfs over
    Debian's script directory, /dev/null over the one on PATH)."""
    hide = []
    on_path = shutil.which("rabbitmq-server")
    if on_path:  # first: it may be a link into the directory hidden next
        hide.append(f"mount --bind /dev/null {shlex.quote(on_path)}")
    if rabbitmq.DEBIAN_SCRIPTS.is_dir():
        hide.append(f"mount -t tmpfs none {shlex.quote(str(rabbitmq.DEBIAN_SCRIPTS))}")
    script = " && ".join([*hide, f"exec {shlex.quote(CONQUER)} demo hosts --broker rabbitmq"])
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (ExitCode.CANNOT_RUN_HERE, "")
    assert result.stderr == (
        "cannot run here: the rabbitmq broker needs rabbitmq-server, which is not installed\n"
    )
