"""Who computes the job: one module per executor, all behind `workers.base`'s small interface.

`EXECUTORS` describes each executor without importing it; `run` checks a plan (executor, IPC, start
method, broker, kind) and imports only the executor it needs, so the CLI starts fast and Celery is loaded only
for the Celery executor.
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tasks import KINDS, Job
from workers.base import (
    BrokerUnreachable,
    ChunkError,
    ChunkResult,
    DeployingExecutor,
    Executor,
    ExecutorError,
    OnChunk,
    Report,
    WorkerLost,
)
from workers.processes import IPC_MODULES

__all__ = [
    "BROKERS",
    "EXECUTORS",
    "IPCS",
    "START_METHODS",
    "BrokerUnreachable",
    "ChunkError",
    "ChunkResult",
    "Deployed",
    "DeployingExecutor",
    "Executor",
    "ExecutorError",
    "OnChunk",
    "Plan",
    "PlanError",
    "Report",
    "WorkerLost",
    "default_start_method",
    "deployment",
    "load",
    "plan",
    "run",
    "variants",
]

#: The names of the in-host IPC mechanisms of the `processes` executor (its registry: IPC_MODULES).
IPCS = tuple(IPC_MODULES)
START_METHODS = ("fork", "spawn", "forkserver")
#: The brokers the celery executor can start for itself (`workers.celery.localstack.EMBEDDABLE`, by
#: name; not imported here, so the CLI starts fast). A plan without one deploys as the executor always
#: has: on the broker configured (CELERY_BROKER_URL), else on the first, the embedded Redis
#: (`brokers.EMBEDDED`).
BROKERS = ("redis", "rabbitmq")

#: Upper bound on --workers: past a few hundred, threads or processes only measure the OS's scheduler.
WORKERS_MAX = 512


class PlanError(ValueError):
    """The executor/IPC/start-method/kind combination is not valid (the message says why)."""


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    name: str
    module: str
    summary: str
    #: The names of its IPCs (the processes executor's are a live view of its registry); the first is
    #: the default.
    ipcs: Collection[str] = ()
    uses_start_method: bool = False
    #: The brokers it can start for itself; the first is what it starts when none is named.
    brokers: tuple[str, ...] = ()
    #: The job kinds this executor can run; None means all of them.
    kinds: tuple[str, ...] | None = None


EXECUTORS: dict[str, ExecutorSpec] = {
    spec.name: spec
    for spec in (
        ExecutorSpec("serial", "workers.serial", "one loop in the calling thread (the baseline)"),
        ExecutorSpec("threads", "workers.threads", "Thread subclass workers pulling from a queue.Queue"),
        ExecutorSpec("thread-pool", "workers.thread_pool", "concurrent.futures.ThreadPoolExecutor"),
        ExecutorSpec(
            "processes",
            "workers.processes",
            "worker processes talking through one IPC mechanism",
            ipcs=IPC_MODULES.keys(),
            uses_start_method=True,
        ),
        ExecutorSpec(
            "celery",
            "workers.celery.chord",
            "Celery worker processes fed through a broker, Redis or RabbitMQ (a chord of chunk tasks)",
            brokers=BROKERS,
        ),
        ExecutorSpec(
            "asyncio",
            "workers.coroutines",
            "coroutines on one event loop (I/O-bound jobs only)",
            kinds=tuple(name for name, kind in KINDS.items() if kind.io_bound),
        ),
        ExecutorSpec("managers", "workers.managers", "workers joining a BaseManager's queues over TCP"),
    )
}


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated way to run a job: which executor, how many workers, and its IPC/start method, or
    the broker it deploys on (None: its default deployment, see BROKERS)."""

    executor: str
    workers: int
    ipc: str | None = None
    start_method: str | None = None
    broker: str | None = None


def default_start_method() -> str:
    """The start method multiprocessing uses here when none is set (fork on Linux before 3.14)."""
    # The first of get_all_start_methods() is the platform default; asking get_start_method() instead
    # would fix the global context as a side effect.
    chosen = multiprocessing.get_start_method(allow_none=True)
    return chosen or multiprocessing.get_all_start_methods()[0]


def plan(
    kind: str,
    executor: str,
    workers: int,
    ipc: str | None = None,
    start_method: str | None = None,
    broker: str | None = None,
) -> Plan:
    """Validate a combination, filling in defaults (IPC `queue`, the platform's start method); a broker
    is left unset unless named: the default deployment is the configured broker's, or the embedded
    Redis."""
    spec = EXECUTORS.get(executor)
    if spec is None:
        raise PlanError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PlanError(f"workers must be an integer >= 1, got {workers!r}")
    if workers > WORKERS_MAX:
        raise PlanError(f"workers must be at most {WORKERS_MAX}, got {workers}")
    if spec.kinds is not None and kind not in spec.kinds:
        raise PlanError(
            f"{executor} runs only {', '.join(spec.kinds)} jobs, not {kind}: "
            f"{KINDS[kind].name} is CPU-bound and would block its event loop"
            if kind in KINDS
            else f"unknown kind {kind!r}"
        )
    if ipc is not None and not spec.ipcs:
        raise PlanError(f"--ipc applies to the processes executor only, not {executor}")
    if ipc is not None and ipc not in spec.ipcs:
        raise PlanError(f"unknown IPC {ipc!r} (choose from {', '.join(spec.ipcs)})")
    if start_method is not None and not spec.uses_start_method:
        raise PlanError(f"--start-method applies to the processes executor only, not {executor}")
    if start_method is not None and start_method not in START_METHODS:
        raise PlanError(f"unknown start method {start_method!r} (choose from {', '.join(START_METHODS)})")
    if broker is not None and not spec.brokers:
        raise PlanError(f"--broker applies to the celery executor only, not {executor}")
    if broker is not None and broker not in spec.brokers:
        raise PlanError(f"unknown broker {broker!r} (choose from {', '.join(spec.brokers)})")
    if spec.ipcs:
        ipc = ipc or next(iter(spec.ipcs))
    if spec.uses_start_method:
        start_method = start_method or default_start_method()
    return Plan(executor, workers, ipc, start_method, broker)


def variants(
    kind: str,
    workers: int,
    *,
    executors: Sequence[str] | None = None,
    start_methods: Sequence[str] | None = None,
    brokers: Sequence[str] | None = None,
) -> list[Plan]:
    """Every way to run `kind`: each applicable executor, each IPC, each start method asked for
    (default: the platform's), each broker asked for (default: the default deployment only — a
    comparison does not start a RabbitMQ node unless asked). Serial comes first — it is the baseline
    for speedups."""
    chosen = list(executors or EXECUTORS)
    unknown = [name for name in chosen if name not in EXECUTORS]
    if unknown:
        raise PlanError(f"unknown executor {unknown[0]!r} (choose from {', '.join(EXECUTORS)})")
    if "serial" not in chosen:
        chosen.insert(0, "serial")
    methods = list(start_methods or [default_start_method()])
    unknown = [name for name in brokers or () if name not in BROKERS]
    if unknown:
        raise PlanError(f"unknown broker {unknown[0]!r} (choose from {', '.join(BROKERS)})")
    plans = []
    for name in sorted(chosen, key=list(EXECUTORS).index):
        spec = EXECUTORS[name]
        if spec.kinds is not None and kind not in spec.kinds:
            continue
        for ipc in spec.ipcs or (None,):
            for method in methods if spec.uses_start_method else (None,):
                for broker in (brokers or (None,)) if spec.brokers else (None,):
                    count = 1 if name == "serial" else workers
                    plans.append(plan(kind, name, count, ipc, method, broker))
    return plans


@dataclass(frozen=True, slots=True)
class Deployed:
    """What an executor set up before its runs: `options` to pass to each `run`, and `facts` about
    it to show next to the timings (None for executors that set nothing up)."""

    options: dict[str, Any]
    facts: dict[str, Any] | None = None


@contextmanager
def deployment(plan_: Plan) -> Iterator[Deployed]:
    """Set up what `plan_`'s executor needs once for many runs (the Celery stack), and tear it down
    afterwards: what a `DeployingExecutor`'s `deploy` yields is passed to each `run` as `deployment=`."""
    executor = load(plan_.executor)
    if not isinstance(executor, DeployingExecutor):
        yield Deployed({})
        return
    # Only to an executor that deploys on a broker (a DeployingExecutor's `deploy` needs no more).
    on: dict[str, Any] = {"broker": plan_.broker} if plan_.broker is not None else {}
    with executor.deploy(workers=plan_.workers, **on) as deployed:
        yield Deployed({"deployment": deployed}, deployed.facts())


def load(name: str) -> Executor:
    """The module of executor `name`, imported now (so the CLI loads only the one it runs)."""
    module = importlib.import_module(EXECUTORS[name].module)
    if not isinstance(module, Executor):  # mypy checks each module; this catches a wrong registry line
        raise TypeError(f"{module.__name__} is registered as an executor but has no run()")
    return module


def run(job: Job, plan_: Plan, *, progress: OnChunk | None = None, **options: Any) -> Report:
    """Run `job` as `plan_` says and return its report (raises ExecutorError if the run fails)."""
    extra: dict[str, Any] = dict(options)
    if plan_.ipc is not None:
        extra["ipc"] = plan_.ipc
    if plan_.start_method is not None:
        extra["start_method"] = plan_.start_method
    if plan_.broker is not None and "deployment" not in extra:
        extra["broker"] = plan_.broker
    return load(plan_.executor).run(job, workers=plan_.workers, progress=progress, **extra)
