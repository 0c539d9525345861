"""Every Celery pool conquer offers (`CONQUER_WORKER_POOL`, `settings.POOLS`) runs a job to the exact
answer on the embedded stack: a pool added to POOLS is run here with no change, and a pool that
cannot start — as the solo pool could not, when a hook meant for pool processes also ran in the solo
worker's own process and ended it — fails here instead of in a user's first `--on celery` run."""

from __future__ import annotations

import json

import pytest

from conquer.exitcodes import ExitCode
from tasks import Job, check
from tests.conftest import conquer
from workers.celery.settings import POOLS


@pytest.mark.parametrize("pool", POOLS)
def test_every_pool_runs_a_job_to_the_exact_answer(pool: str) -> None:
    job = Job("sum", 1_000_003, 8)
    result = conquer(
        "run", "sum", str(job.n), "--chunks", str(job.chunks), "--on", "celery", "--workers", "2", "--json",
        env={"CONQUER_WORKER_POOL": pool},
        timeout=90,
    )  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert (report["value"], report["verified"]) == (check(job), True)
    assert report["details"]["pool"] == pool
