"""`benchmarks/celery_overhead.py` runs and measures what docs/broker-costs.md quotes from it: every
variant, the CPU per chunk split by process role — on RabbitMQ the node and the Redis that keeps the
results apart. Run with `--quick --rounds 1` (small jobs; the figures are not looked at, only that each
was measured): the script is not part of `conquer`, and nothing else would notice it had stopped
working (it had: its solo stack could not start)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import ROOT
from workers.celery.brokers import rabbitmq

SCRIPT = ROOT / "benchmarks" / "celery_overhead.py"


@pytest.mark.timeout(300)
def test_the_broker_cost_script_measures_every_variant_and_splits_the_cpu_by_role(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())
    module = runpy.run_path(str(SCRIPT))  # its names (not run as __main__: nothing is measured)
    variants = list(module["VARIANTS"])
    try:
        rabbitmq.server_binary()
    except RuntimeError:
        variants.remove(module["RABBITMQ"])
        assert f"{module['RABBITMQ']}: not measured" in result.stdout
    expected = ["processes", *variants, module["DEFAULTS"]]
    for part in ("cpu_bound", "trivial"):
        assert list(summary[part]) == expected
        for name in expected:
            assert summary[part][name]["wall_s_median"] > 0, (part, name)
    for name in variants:
        used = summary["trivial"][name]["cpu_s_median"]
        assert used["children"] > 0 or "solo" in name, name  # a solo worker runs chunks in its main process
        assert used["broker"] > 0, name
        on_rabbitmq = name == module["RABBITMQ"]
        # Beside RabbitMQ the results are kept in a Redis of their own, which did work; with Redis as
        # the broker that is one server, counted once, as the broker.
        assert (used["backend"] > 0) == on_rabbitmq, (name, used)
        assert used["total"] == pytest.approx(sum(v for role, v in used.items() if role != "total"))
    assert summary["redis_floor_ops_per_s"]
