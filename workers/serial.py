"""Serial: every chunk in order, in the calling thread — the baseline every speedup is measured against."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tasks import Job, split
from workers.base import ChunkFailure, ChunkResult, Executor, OnChunk, Report, attempt, make_report


def run(job: Job, *, workers: int = 1, progress: OnChunk | None = None) -> Report:
    del workers  # one worker by definition; accepted so every executor takes the same arguments
    began = time.perf_counter()
    results: list[ChunkResult] = []
    for chunk in split(job):
        outcome = attempt(chunk)
        if isinstance(outcome, ChunkFailure):
            raise outcome.to_exception()
        results.append(outcome)
        if progress:
            progress(outcome)
    return make_report(job, "serial", results, time.perf_counter() - began, workers=1)


if TYPE_CHECKING:  # mypy checks this module against the executor interface (workers.base)
    from workers import serial as this  # noqa: PLW0406 (a module names itself only by importing)

    _: Executor = this
