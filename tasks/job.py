"""A job and its chunks: how one divide-and-conquer job is cut into messages.

A job is (kind, n, chunks). `split` cuts 1..n into `chunks` contiguous half-open ranges that cover every
item exactly once; `chunk_at` computes any one of them in O(1), so a worker that knows the job can find
its own range without being sent a list. A `Chunk` is the message every executor passes around — a
range plus the job's few parameters — and its size never grows with n: sending 10^9 numbers to a worker
costs the same as sending 10.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass
from typing import Any

from tasks import faults, kinds

#: At most this many chunks per job: each chunk is one message (and, through Celery, one task and one
#: result key), so the cap bounds broker and backend memory for one job.
CHUNKS_MAX = 10_000

#: Longest simulated per-item latency of the `download` job, in seconds.
LATENCY_MAX = 10.0
DEFAULT_LATENCY = 0.1


class JobError(ValueError):
    """The job's parameters are invalid (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of work: the half-open range [start, stop) of job `kind`, numbered `index`.

    `latency` is the download job's wait per item; `fault` is the job's injected fault as a spec
    (`tasks.faults`), which strikes only the chunk holding its item. Every field is a small scalar or
    a few bytes of text: the message has the same size whatever n is.
    """

    kind: str
    index: int
    start: int
    stop: int
    latency: float = 0.0
    fault: str | None = None

    @property
    def size(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"chunk {self.index} [{self.start}, {self.stop})"

    def to_message(self) -> dict[str, Any]:
        """The chunk as a JSON-safe dict (what goes over a broker)."""
        return asdict(self)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Chunk:
        return cls(**message)


@dataclass(frozen=True, slots=True)
class Job:
    """Compute `kind` over the items 1..n, cut into `chunks` ranges. Validated on construction.

    `fault` injects one fault (a `tasks.faults` spec such as ``transient:2@600``). `fail_at=ITEM` is
    not a field but the constructor's shorthand for ``fault="fail@ITEM"`` (what `--fail-at` says), folded
    into `fault` here: a job has one fault field, whichever way it was given. At most one of the two.
    """

    kind: str
    n: int
    chunks: int = 16
    latency: float = DEFAULT_LATENCY
    fail_at: InitVar[int | None] = None
    fault: str | None = None

    def __post_init__(self, fail_at: int | None) -> None:
        spec = kinds.KINDS.get(self.kind)
        if spec is None:
            raise JobError(f"unknown kind {self.kind!r} (choose from {', '.join(kinds.KINDS)})")
        for name in ("n", "chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise JobError(f"{name} must be an integer, not {value!r}")
        if self.n < 1:
            raise JobError(f"n must be at least 1, got {self.n}")
        if self.n > spec.n_max:
            raise JobError(f"n must be at most {spec.n_max:_} for {self.kind} ({spec.n_max_reason})")
        if self.chunks < 1:
            raise JobError(f"chunks must be at least 1, got {self.chunks}")
        if self.chunks > self.n:
            raise JobError(f"chunks ({self.chunks}) cannot exceed n ({self.n}): a chunk would be empty")
        if self.chunks > CHUNKS_MAX:
            raise JobError(f"chunks must be at most {CHUNKS_MAX:_} (one message and one result each)")
        if not 0 <= self.latency <= LATENCY_MAX:
            raise JobError(f"latency must be between 0 and {LATENCY_MAX:g} s, got {self.latency:g}")
        if fail_at is not None:
            if not 1 <= fail_at <= self.n:
                raise JobError(f"fail-at must be an item in 1..{self.n}, got {fail_at}")
            if self.fault is not None:
                raise JobError("give either fail-at or a fault, not both")
            object.__setattr__(self, "fault", faults.Fault(faults.FAIL, fail_at).spec)  # frozen: set once
        if self.fault is not None:
            try:
                fault = faults.parse(self.fault)
            except faults.FaultError as error:
                raise JobError(str(error)) from None
            if not 1 <= fault.item <= self.n:
                raise JobError(f"fault {self.fault!r}: ITEM must be in 1..{self.n}, got {fault.item}")

    @property
    def spec(self) -> kinds.Kind:
        return kinds.KINDS[self.kind]

    @property
    def fault_spec(self) -> str | None:
        """The job's fault in canonical form (what each chunk message carries), or None."""
        return faults.parse(self.fault).spec if self.fault is not None else None

    def describe(self) -> str:
        return f"{self.kind} 1..{self.n:_} in {self.chunks} chunks"


def chunk_at(job: Job, index: int) -> Chunk:
    """The `index`-th chunk of `job` in O(1): the first n % chunks ranges are one item longer."""
    if not 0 <= index < job.chunks:
        raise IndexError(f"chunk index {index} outside 0..{job.chunks - 1}")
    base, longer = divmod(job.n, job.chunks)
    start = 1 + index * base + min(index, longer)
    stop = start + base + (1 if index < longer else 0)
    latency = job.latency if job.spec.io_bound else 0.0
    return Chunk(job.kind, index, start, stop, latency, job.fault_spec)


def split(job: Job) -> list[Chunk]:
    """All chunks of `job`, in order: contiguous, non-empty, covering 1..n exactly once."""
    return [chunk_at(job, index) for index in range(job.chunks)]


def run_chunk(chunk: Chunk, attempt: int = 0) -> int:
    """Compute one chunk's partial result. If it holds the job's fault, the fault strikes first
    (raises or stalls; `attempt` is how many times this chunk ran before, for transient faults), or
    on the partial (corrupt)."""
    faults.strike(chunk.fault, chunk.start, chunk.stop, attempt=attempt)
    partial = kinds.KINDS[chunk.kind].compute(chunk.start, chunk.stop, chunk.latency)
    return faults.corrupt(chunk.fault, chunk.start, chunk.stop, partial)


async def run_chunk_async(chunk: Chunk) -> int:
    """`run_chunk` as a coroutine, for I/O-bound kinds only: their waits yield to the event loop."""
    if not kinds.KINDS[chunk.kind].io_bound:
        raise JobError(f"{chunk.kind} is CPU-bound: a coroutine would block the event loop")
    await faults.strike_async(chunk.fault, chunk.start, chunk.stop)
    partial = await kinds.download_range_async(chunk.start, chunk.stop, chunk.latency)
    return faults.corrupt(chunk.fault, chunk.start, chunk.stop, partial)


def combine(kind: str, partials: list[int]) -> int:
    return kinds.combine(kind, partials)


def check(job: Job) -> int:
    """The job's answer computed independently of the chunks (see each kind's `check_method`)."""
    return job.spec.check(job.n)
