"""What is computed: the job's pure functions (`Job`, `split`, `run_chunk`, `combine`, `check`).

Nothing here imports anything heavy or starts any concurrency.
"""

from __future__ import annotations

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
from tasks.kinds import KINDS, InjectedFault

__all__ = [
    "CHUNKS_MAX",
    "KINDS",
    "Chunk",
    "InjectedFault",
    "Job",
    "JobError",
    "check",
    "chunk_at",
    "combine",
    "run_chunk",
    "run_chunk_async",
    "split",
]
