"""What is computed: the job's pure functions (`Job`, `split`, `run_chunk`, `combine`, `check`).

Nothing here imports anything heavy or starts any concurrency.
"""

from __future__ import annotations

from tasks.faults import InjectedFault, TransientFault
from tasks.job import (
    CHUNKS_MAX,
    Chunk,
    Job,
    JobError,
    check,
    chunk_at,
    combine,
    run_chunk,
    run_chunk_async,
    split,
)
from tasks.kinds import KINDS

__all__ = [
    "CHUNKS_MAX",
    "KINDS",
    "Chunk",
    "InjectedFault",
    "Job",
    "JobError",
    "TransientFault",
    "check",
    "chunk_at",
    "combine",
    "run_chunk",
    "run_chunk_async",
    "split",
]


def __getattr__(name: str) -> object:
    """`tasks.app` (and `tasks.celery`, the other name Celery's `-A tasks` looks for): the Celery app,
    imported on first use only (PEP 562), so that importing `tasks` never loads Celery."""
    if name in ("app", "celery"):
        from tasks.celery_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
