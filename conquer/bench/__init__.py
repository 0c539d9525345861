"""`conquer bench`: the comparison as numbers and pictures.

A reproducible suite — CPU-bound scaling, the issues' target ratios, chunk granularity, the I/O-bound
job against its latency limit, trivial-chunk throughput, message round trips beside the Redis floor,
process start-up per start method, and peak memory — each point the median of its repeats with the
spread, every answer verified. It writes one JSON document (schema: docs/bench/SCHEMA.md), a Markdown
report and, with the `bench` extra (matplotlib), PNG charts.

Usage::

    conquer bench --quick --out /tmp/bench          # every series but recovery, small jobs, < 2 min
    conquer bench --out docs/bench                  # the full run (a quarter of an hour on 2 cores)
    conquer bench --quick --series ratios,io        # only some series
    conquer bench --series recovery                 # faults on several hosts (root): only when named
"""

from __future__ import annotations

#: The document's schema id; bumped only by an incompatible change (fields may be added within a version).
SCHEMA = "conquer-bench/1"

#: Every series a plain `conquer bench` runs, in the order they run. Each is one module of this package
#: (see `conquer.bench.suite`).
SERIES = ("ratios", "cpu", "builds", "granularity", "io", "trivial", "round-trip", "startup", "memory")

#: Series that run only when `--series` names them, after the others: `recovery` takes a quarter of an
#: hour or more (the Redis faults wait for the visibility timeout) and needs root and nftables for its
#: hosts, so it would break `--quick`'s 2 minutes and skip on most machines.
NAMED_ONLY = ("recovery",)

#: Names of the files a run writes into its output directory.
JSON_FILE = "results.json"
MARKDOWN_FILE = "results.md"
