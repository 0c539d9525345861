"""`conquer bench` through its installed entry point: a tiny run writes a document that matches the
documented schema, a Markdown report and every chart; without the `bench` extra it still writes the
results and says how to install it. Nothing here checks a timing — only that each figure exists, is
consistent with the others, and that every answer was verified."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

import workers
from conquer import figures, machine
from conquer.bench import JSON_FILE, MARKDOWN_FILE, SERIES, charts, targets
from conquer.exitcodes import ExitCode
from tests.conftest import CONQUER, conquer, wait_until
from tests.conquer.rows import check_runs, disturbed_flags, expected_disturbed

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "bench" / "schema.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: The tiny run (`tiny_run`) is set up by whichever of its tests runs first, within that test's timeout.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One tiny run of every series, shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("bench")
    # The builds series adds about 25 s at load 7 (two runners, each with its Celery stacks): 79 s in all;
    # the RabbitMQ node ratios and trivial run celery on, 10-15 s more: 81 s in all at load 2.
    result = conquer("bench", "--tiny", "--out", str(out), timeout=220)
    return result, out


@pytest.fixture(scope="module")
def document(tiny_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    result, out = tiny_run
    assert result.returncode == ExitCode.OK, result.stderr
    loaded: dict[str, Any] = json.loads((out / JSON_FILE).read_text())
    return loaded


def validate(document: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)


def test_the_document_matches_the_documented_schema(document: dict[str, Any]) -> None:
    validate(document)
    assert [series["name"] for series in document["series"]] == list(SERIES)
    assert document["profile"] == "tiny"


def test_the_schema_is_documented_field_by_field() -> None:
    """Every property the JSON Schema names appears in SCHEMA.md, so the prose cannot fall behind."""
    schema = json.loads(SCHEMA.read_text())
    prose = SCHEMA.with_name("SCHEMA.md").read_text()

    def properties(node: object) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            found |= set(node.get("properties", {}))
            for value in node.values():
                found |= properties(value)
        elif isinstance(node, list):
            for value in node:
                found |= properties(value)
        return found

    missing = sorted(name for name in properties(schema) if f"`{name}`" not in prose)
    assert not missing, f"SCHEMA.md does not describe: {missing}"


def test_every_point_was_measured_and_verified(document: dict[str, Any]) -> None:
    for series in document["series"]:
        for point in series["points"]:
            where = f"{series['name']}: {point['label']}"
            assert point["error"] is None, where
            assert point["verified"] is True, where
            assert point["repeats"] == document["repeats"] == len(point["samples"]), where
            assert point["min"] <= point["median"] <= point["max"], where


def test_every_timed_point_carries_what_disturbed_it(document: dict[str, Any]) -> None:
    """Each run of a timed point has its CPU time, steal and other load; its disturbed flags are those
    the thresholds call for; every figure it had when flagged is still there (flags never hide one)."""
    for series in document["series"]:
        for point in series["points"]:
            where = f"{series['name']}: {point['label']}"
            if point["unit"] != "s":
                assert point["runs"] == [], where  # a peak of memory is not a time
            elif "mechanism" in point["params"]:
                assert len(point["runs"]) == 1, where  # one batch: one meter
            else:
                assert len(point["runs"]) == point["repeats"], where
            check_runs(point["runs"])
            if point["runs"]:
                assert point["cpu_s"] is not None, where  # the embedded stack: in this process tree
                assert point["cpu_s"] >= 0, where
            found = disturbed_flags(point["flags"])
            assert found == expected_disturbed(point["disturbance"], figures.THRESHOLDS), where
            assert point["median"] is not None, where


def test_every_series_measures_every_registered_executor(document: dict[str, Any]) -> None:
    """Executors come from the registry: each one that can run the kind shows up, none is missing."""
    by_name = {series["name"]: series for series in document["series"]}
    for name, kind in (("cpu", "sum"), ("cpu", "primes"), ("io", "download"), ("trivial", "sum")):
        measured = {
            (point["params"]["executor"], point["params"]["ipc"])
            for point in by_name[name]["points"]
            if point["params"]["kind"] == kind
        }
        expected = {(plan.executor, plan.ipc) for plan in workers.variants(kind, 2)}
        assert measured == expected, name


def test_an_expected_executor_that_is_absent_is_named_as_not_measured(document: dict[str, Any]) -> None:
    celery_targets = [t for t in document["targets"] if t["id"].startswith("celery-")]
    ratios = next(series for series in document["series"] if series["name"] == "ratios")
    if "celery" in workers.EXECUTORS:
        assert {point["params"]["executor"] for point in ratios["points"]} >= {"celery"}
        assert all(target["status"] != "not measured" for target in celery_targets)
    else:
        assert [item["what"] for item in ratios["skipped"]] == ["celery"]
        assert all(target["status"] == "not measured" for target in celery_targets)
        assert all("celery" in target["reason"] for target in celery_targets)
        assert any(note.startswith("celery not measured in ratios") for note in document["notes"])


def test_ratios_and_trivial_run_celery_on_rabbitmq_beside_redis(document: dict[str, Any]) -> None:
    """Where a RabbitMQ node can run (and no broker is configured), each of the two series has a
    `celery/rabbitmq` point next to celery's own, measured on a private node; elsewhere, one line
    saying why not."""
    from workers.celery.brokers import rabbitmq

    try:
        rabbitmq.server_binary()
        here = document["machine"]["broker"]["kind"] == "embedded"
    except RuntimeError:
        here = False
    by_name = {series["name"]: series for series in document["series"]}
    for name in ("ratios", "trivial"):
        series = by_name[name]
        celery = [point for point in series["points"] if point["params"]["executor"] == "celery"]
        skipped = [item for item in series["skipped"] if item["what"] == "celery/rabbitmq"]
        if not here:
            assert [point["params"]["broker"] for point in celery] == [None], name
            assert len(skipped) == 1, name
            assert skipped[0]["reason"], name
            continue
        assert skipped == [], name
        assert [(point["label"], point["params"]["broker"]) for point in celery] == [
            ("celery", None),
            ("celery/rabbitmq", "rabbitmq"),
        ], name
        assert [point["deployment"]["broker_name"] for point in celery] == ["Redis", "RabbitMQ"], name
        assert all(point["verified"] and point["median"] is not None for point in celery), name
    ratios = by_name["ratios"]
    processes = next(point for point in ratios["points"] if point["params"]["executor"] == "processes")
    on_rabbitmq = [point for point in ratios["points"] if point["params"]["broker"] == "rabbitmq"]
    expected = figures.speedup(on_rabbitmq[0]["median"], processes["median"]) if on_rabbitmq else None
    assert ratios["derived"]["celery_rabbitmq_over_processes"] == expected


def test_machine_facts_name_the_build_packages_and_broker(document: dict[str, Any]) -> None:
    facts = document["machine"]
    assert facts["cores"] == machine.cores()
    assert facts["free_threaded_build"] == machine.free_threaded_build()
    assert facts["packages"]["conquer"] == metadata.version("conquer")
    assert facts["packages"]["matplotlib"] == metadata.version("matplotlib")
    assert facts["broker"]["kind"] == machine.broker()["kind"]


def test_targets_are_judged_from_the_measured_figures(document: dict[str, Any]) -> None:
    by_name = {series["name"]: series for series in document["series"]}
    assert [target["id"] for target in document["targets"]] == [target.id for target in targets.TARGETS]
    for target in document["targets"]:
        flagged = bool(target["flags"])
        status, shortfall = targets.judge(target["value"], target["comparison"], target["threshold"], flagged)
        assert (target["status"], target["shortfall"]) == (status, shortfall)
        # A target's flags are exactly those of the points its figure is read from.
        source = next(t for t in targets.TARGETS if t.id == target["id"])
        assert target["flags"] == targets.flags_of(source, by_name)
        assert target["conditions_match"] is False  # a tiny run never measures the targets' own jobs
    speedup = next(t for t in document["targets"] if t["id"] == "processes-speedup-sum")["value"]
    ratio = by_name["ratios"]["points"]
    serial, processes = (point["median"] for point in ratio[:2])
    assert speedup == pytest.approx(serial / processes)


def test_the_io_series_states_its_latency_limit(document: dict[str, Any]) -> None:
    io = next(series for series in document["series"] if series["name"] == "io")
    parameters = io["parameters"]
    assert parameters["chunks"] == parameters["n"]  # one item per chunk
    assert io["derived"]["latency_limit_speedup"] == pytest.approx(
        parameters["n"] / math.ceil(parameters["n"] / parameters["workers"])
    )
    assert f"{io['derived']['latency_limit_speedup']:g}× serial" in io["what"]


def test_the_memory_bound_counts_the_command_and_every_worker(document: dict[str, Any]) -> None:
    series = next(series for series in document["series"] if series["name"] == "memory")
    for point in series["points"]:
        figures = point["derived"]
        assert figures["processes_forked"] == point["params"]["workers"]
        assert figures["largest_worker_peak_rss_bytes"] > 0
        assert 0 < figures["command_peak_rss_bytes"] < point["median"]
    small, large = (point["median"] for point in series["points"])
    assert series["derived"]["growth"] == pytest.approx(large / small)


def test_every_chart_is_written_and_referenced_by_the_markdown(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], document: dict[str, Any]
) -> None:
    result, out = tiny_run
    expected = [file for name, file, _, _ in charts.CHARTS if name in SERIES]
    assert [chart["file"] for chart in document["charts"]] == expected
    markdown = (out / MARKDOWN_FILE).read_text()
    for chart in document["charts"]:
        assert (out / chart["file"]).read_bytes()[:8] == PNG_MAGIC, chart["file"]
        assert f"]({chart['file']})" in markdown
    for series in document["series"]:
        assert f"## {series['title']} (`{series['name']}`)" in markdown
    assert "## Targets" in markdown
    assert f"wrote {out}/: {JSON_FILE}, {MARKDOWN_FILE}" in result.stdout


#: Runs `conquer bench` with matplotlib made unimportable, as on an install without the `bench` extra
#: (a None entry in sys.modules makes `import matplotlib` raise ImportError).
WITHOUT_EXTRA = """
import sys
sys.modules["matplotlib"] = None
from conquer.cli import main
sys.argv = ["conquer", *sys.argv[1:]]
main()
"""


def test_without_the_bench_extra_it_writes_json_and_markdown_and_says_how_to_install(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", WITHOUT_EXTRA, "bench", "--tiny", "--series", "ratios"]
    result = subprocess.run(
        [*argv, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert "charts skipped: matplotlib is not installed" in result.stderr
    assert "pip install 'conquer[bench]'" in result.stderr
    document = json.loads((tmp_path / JSON_FILE).read_text())
    validate(document)
    assert document["charts"] == []
    assert not list(tmp_path.glob("*.png"))
    assert any("pip install 'conquer[bench]'" in note for note in document["notes"])
    assert (tmp_path / MARKDOWN_FILE).read_text().startswith("# conquer bench — tiny run")


def test_an_unknown_series_is_a_usage_error(tmp_path: Path) -> None:
    result = conquer("bench", "--series", "cpu,warp-drive", "--out", str(tmp_path))
    assert result.returncode == ExitCode.USAGE
    assert "unknown series 'warp-drive'" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_broker_setting_that_cannot_work_is_a_usage_error(tmp_path: Path) -> None:
    result = conquer("bench", "--tiny", "--out", str(tmp_path), env={"CELERY_BROKER_URL": "http://nowhere"})
    assert result.returncode == ExitCode.USAGE
    assert "CELERY_BROKER_URL must be a Redis or RabbitMQ URL" in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_out_path_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    occupied = tmp_path / "results"
    occupied.write_text("not a directory")
    result = conquer("bench", "--tiny", "--out", str(occupied))
    assert result.returncode == ExitCode.USAGE
    assert "is a file" in result.stderr


def test_ctrl_c_keeps_the_series_already_measured_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the whole foreground process group; do the same after the first
    series: the document holds it, says it is incomplete, and no worker is left behind."""
    process = subprocess.Popen(
        [CONQUER, "bench", "--tiny", "--series", "ratios,cpu,startup", "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("ratios:") for line in lines), 60, "ratios never finished")
        children = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == ExitCode.INTERRUPTED
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(10)
        process.stderr.close()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"
    assert "interrupted; wrote what was measured" in "".join(lines)
    document = json.loads((tmp_path / JSON_FILE).read_text())
    validate(document)
    assert document["complete"] is False
    assert document["series"][0]["name"] == "ratios"
    assert document["notes"][0].startswith("interrupted while measuring")
