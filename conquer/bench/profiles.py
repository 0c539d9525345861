"""How big each part of `conquer bench` is, per profile.

- ``full``  the run committed under docs/bench/: the issues' own jobs (sum 10^8, download 100 × 100 ms,
            2,000 trivial chunks, memory at 10^7 and 10^9). About a quarter of an hour on 2 cores.
- ``quick`` every series and every executor, on jobs small enough to finish in under 2 minutes on
            2 cores: for trying the bench, not for quoting (the targets are marked as measured on
            smaller jobs than theirs).
- ``tiny``  the tests' run: seconds per series. It proves the plumbing (schema, tables, charts), never
            a speed.

The `recovery` series runs only when named, and its job is the same in every profile (its chunks
must outlast the look that finds one running); the profiles differ only in its rounds: 5, 2, 1.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The jobs the issues set targets on (issues 2, 3 and 6). A profile that measures smaller jobs says so
#: next to each target's status.
TARGET_SUM_N = 100_000_000
TARGET_CHUNKS = 16
TARGET_IO_ITEMS = 100
TARGET_IO_LATENCY = 0.1
TARGET_IO_WORKERS = 32
TARGET_TRIVIAL_CHUNKS = 2_000
TARGET_MEMORY_N = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    #: Runs per point; each point reports the median and the spread of its runs.
    repeats: int
    #: CPU-bound scaling: n for `sum` and for `primes`, cut into `cpu_chunks` chunks.
    cpu_sum_n: int
    cpu_primes_n: int
    cpu_chunks: int
    #: The issues' ratio targets: sum `target_n` in `target_chunks` chunks on as many workers as cores.
    target_n: int
    target_chunks: int
    #: Granularity: sum `granularity_n` cut into each of `granularity_chunks`.
    granularity_n: int
    granularity_chunks: tuple[int, ...]
    #: I/O-bound: `io_items` downloads of `io_latency` s, one per chunk, on `io_workers` workers.
    io_items: int
    io_latency: float
    io_workers: int
    #: Broker overhead: a job of this many one-item chunks, and messages per round-trip sample.
    trivial_chunks: int
    round_trips: int
    redis_requests: int
    #: Peak memory of `conquer run sum N --on processes` at these two N.
    memory_n: tuple[int, int]
    #: Sweep every worker count 1, 2, ..., 2×cores (the issue's), or only 1, cores and 2×cores.
    every_worker_count: bool = True
    #: A cap on the largest worker count (`tiny` keeps the tests' run short).
    max_workers: int | None = None
    #: Rounds of the `recovery` series (None: `repeats`). Each round takes minutes (the Redis faults
    #: wait for the visibility timeout), so the smaller profiles take fewer.
    recovery_repeats: int | None = None

    def worker_counts(self, cores: int) -> tuple[int, ...]:
        """1, 2, ..., 2×cores — or 1, cores, 2×cores — up to `max_workers`."""
        top = 2 * cores if self.max_workers is None else min(self.max_workers, 2 * cores)
        counts = range(1, top + 1) if self.every_worker_count else {1, cores, top}
        return tuple(sorted(count for count in counts if count <= top))


PROFILES = {
    profile.name: profile
    for profile in (
        Profile(
            name="full",
            repeats=5,
            cpu_sum_n=20_000_000,
            cpu_primes_n=500_000,
            cpu_chunks=16,
            target_n=TARGET_SUM_N,
            target_chunks=TARGET_CHUNKS,
            granularity_n=10_000_000,
            granularity_chunks=tuple(2**power for power in range(13)),  # 1 .. 4096
            io_items=TARGET_IO_ITEMS,
            io_latency=TARGET_IO_LATENCY,
            io_workers=TARGET_IO_WORKERS,
            trivial_chunks=TARGET_TRIVIAL_CHUNKS,
            round_trips=2_000,
            redis_requests=20_000,
            memory_n=(10_000_000, TARGET_MEMORY_N),
        ),
        Profile(
            name="quick",
            repeats=5,
            cpu_sum_n=2_000_000,
            cpu_primes_n=100_000,
            cpu_chunks=16,
            target_n=10_000_000,
            target_chunks=TARGET_CHUNKS,
            granularity_n=1_000_000,
            granularity_chunks=(1, 4, 16, 64, 256),
            io_items=TARGET_IO_ITEMS,
            io_latency=0.01,
            io_workers=TARGET_IO_WORKERS,
            trivial_chunks=200,
            round_trips=500,
            redis_requests=5_000,
            memory_n=(1_000_000, 10_000_000),
            every_worker_count=False,
            recovery_repeats=2,
        ),
        Profile(
            name="tiny",
            repeats=3,
            cpu_sum_n=20_000,
            cpu_primes_n=5_000,
            cpu_chunks=4,
            target_n=100_000,
            target_chunks=4,
            granularity_n=10_000,
            granularity_chunks=(1, 16, 256),
            io_items=16,
            io_latency=0.002,
            io_workers=8,
            trivial_chunks=40,
            round_trips=40,
            redis_requests=500,
            memory_n=(10_000, 100_000),
            max_workers=2,
            recovery_repeats=1,
        ),
    )
}
