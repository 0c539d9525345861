"""`conquer bench --series recovery` through its installed entry point, one round: every broker and
fault has its point, each faulted run's answer is the exact one and its combine ran once, the
recovery figures follow from the runs (nothing here trusts a figure the bench computed without
computing it again), the report has a row per broker and fault, and nothing of the hosts is left.
Nothing here checks a speed: the measured figures are in docs/benchmarks.md.

Needs root, `ip` and `nft` (the hosts) and `rabbitmq-server`: skipped in one line without them.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import psutil
import pytest

from conquer import hosts, hosts_celery
from conquer.bench import JSON_FILE, MARKDOWN_FILE, SERIES, charts
from conquer.bench.recovery import BROKERS, FAULTS, JOB, NO_FAULT
from conquer.exitcodes import ExitCode
from tasks import check
from tests.conftest import conquer
from tests.conquer.test_bench import validate


def why_not() -> str | None:
    return hosts.unavailable() or hosts_celery.unavailable("amqp")


#: One round on both brokers took 172 s at load 2 on the 2-core VM (the Redis faults wait for the
#: 20 s visibility timeout, RabbitMQ's node boots twice); the deadline is generous for a loaded one.
RUN_DEADLINE_S = 1200


@pytest.mark.skipif(why_not() is not None, reason=why_not() or "")
@pytest.mark.timeout(RUN_DEADLINE_S + 120)
def test_recovery_measures_every_fault_on_every_broker_with_exact_answers_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    result = conquer(
        "bench", "--series", "recovery", "--repeats", "1", "--out", str(tmp_path), timeout=RUN_DEADLINE_S
    )
    assert result.returncode == ExitCode.OK, result.stderr
    document: dict[str, Any] = json.loads((tmp_path / JSON_FILE).read_text())
    validate(document)
    (series,) = document["series"]
    assert series["name"] == "recovery"
    assert series["skipped"] == []
    points = {(p["params"]["broker"], p["params"]["fault"]): p for p in series["points"]}
    assert set(points) == {(broker, fault) for broker in BROKERS for fault in (NO_FAULT, *FAULTS)}

    exact = check(JOB)
    for broker in BROKERS:
        free = points[broker, NO_FAULT]
        assert (free["error"], free["verified"], free["repeats"]) == (None, True, 1), free["label"]
        assert free["derived"]["answers"] == [exact]
        for fault in FAULTS:
            point = points[broker, fault]
            derived = point["derived"]
            assert (point["error"], point["verified"], point["repeats"]) == (None, True, 1), point["label"]
            assert derived["answers"] == [exact], point["label"]
            assert (derived["wrong_answers"], derived["double_combines"], derived["faults_off_chunk"]) == (
                0,
                0,
                0,
            )
            # The recovery cost, computed again from the runs: faulted wall − the fault-free median.
            (wall,) = derived["faulted_walls_s"]
            cost = wall - free["median"]
            assert derived["recovery_costs_s"] == [pytest.approx(cost, abs=1e-3)], point["label"]
            assert derived["recovery_cost_s"] == pytest.approx(statistics.median([cost]), abs=1e-3)
            assert derived["fault_free_wall_s"] == free["median"]
            # The fault came during the run: after its submit, before its answer.
            (to_answer,) = point["samples"]
            assert 0 < to_answer < wall, point["label"]
            # A chunk was faulted mid-run: at least one chunk ran again (Redis's broker restart may
            # lose none: its worker acknowledges late, after its connection came back).
            if (broker, fault) != ("redis", "broker-restart"):
                assert derived["extra_chunk_runs"][0] >= 1, point["label"]
    assert series["derived"]["wrong_answers"] == 0
    assert series["derived"]["double_combines"] == 0
    assert series["derived"]["faulted_runs"] == len(BROKERS) * len(FAULTS)

    report = (tmp_path / MARKDOWN_FILE).read_text()
    for point in series["points"]:
        broker, said = point["label"].split(": ")
        assert f"| {broker} | {said} | 1 |" in report, point["label"]
    if charts.available():
        assert {
            "series": "recovery",
            "file": "recovery.png",
            "title": "Recovery cost per fault and broker",
        } in (document["charts"])
        assert (tmp_path / "recovery.png").stat().st_size > 0

    # Nothing left: the hosts (namespaces, links, nftables tables), their directory, and any process of
    # the deployments (the workers' node names end in the hosts' run id; a RabbitMQ node's HOME is in
    # the directory). The bench's own children are checked by conftest's no_leftovers.
    for point in series["points"]:
        run_id, directory = point["deployment"]["hosts_run"], point["deployment"]["directory"]
        assert hosts.leftovers(run_id) == []
        assert not Path(directory).exists()
        for process in psutil.process_iter(["cmdline"]):
            with_run = any(
                f"@{run_id}" in word or directory in word for word in process.info["cmdline"] or []
            )
            assert not with_run, f"process {process.pid} of the run is left: {process.info['cmdline']}"


def test_recovery_runs_only_when_named() -> None:
    """A plain `conquer bench` (and --quick) runs SERIES: recovery is not among them, and --help says
    how to run it."""
    assert "recovery" not in SERIES
    result = conquer("bench", "--help")
    assert result.returncode == ExitCode.OK
    assert "recovery (faults on several hosts" in result.stdout
    assert "runs only when named" in " ".join(result.stdout.split())


#: The run docs/benchmarks.md quotes.
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "bench" / "recovery" / JSON_FILE


def test_the_committed_run_matches_the_schema_and_its_costs_follow_from_its_runs() -> None:
    document: dict[str, Any] = json.loads(COMMITTED.read_text())
    validate(document)
    (series,) = document["series"]
    free = {p["params"]["broker"]: p for p in series["points"] if p["params"]["fault"] == NO_FAULT}
    for point in series["points"]:
        if point["params"]["fault"] == NO_FAULT:
            continue
        derived = point["derived"]
        baseline = statistics.median(free[point["params"]["broker"]]["samples"])
        costs = [wall - baseline for wall in derived["faulted_walls_s"]]
        assert derived["recovery_costs_s"] == pytest.approx(costs, abs=2e-3), point["label"]
        assert derived["recovery_cost_s"] == pytest.approx(statistics.median(costs), abs=2e-3)
        assert derived["answers"] == [check(JOB)] * point["repeats"]
        assert len(point["samples"]) == 5


def test_without_nft_the_series_is_skipped_in_one_line_and_nothing_fails(tmp_path: Path) -> None:
    path = os.pathsep.join(
        directory
        for directory in os.environ["PATH"].split(os.pathsep)
        if not (directory and os.path.exists(os.path.join(directory, "nft")))
    )
    result = conquer("bench", "--series", "recovery", "--out", str(tmp_path), env={"PATH": path}, timeout=120)
    assert result.returncode == ExitCode.OK, result.stderr
    document: dict[str, Any] = json.loads((tmp_path / JSON_FILE).read_text())
    validate(document)
    (series,) = document["series"]
    assert series["points"] == []
    (skipped,) = series["skipped"]
    assert skipped["what"] == "every fault on every broker"
    assert skipped["reason"].startswith("several hosts need ")
    assert "\n" not in skipped["reason"]
    assert "recovery: 0 points" in result.stderr
