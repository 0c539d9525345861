"""What is computed: the job's pure functions (`Job`, `split`, `run_chunk`, `combine`, `check`).

`job` (a job and its chunks), `kinds` (what each kind of job computes and how its answer is checked),
`faults` (the faults a job can inject). Nothing here imports anything heavy, starts any concurrency or
knows who runs it: the executors are in `workers`, the Celery side in `workers.celery`.

`tasks.celery` is not part of this: it is the entry module Celery's CLI finds (`celery -A tasks`),
which nothing here imports.
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
