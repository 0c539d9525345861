"""Which executors a series runs, found through the registry (`workers.EXECUTORS`) only: a series that
measures every executor picks up one added later with no change here, and one that names an executor
the registry lacks records it as skipped, saying why, instead of failing."""

from __future__ import annotations

import dataclasses

import workers
from conquer.bench.points import Series
from workers import Plan

#: The broker executor, which the ratio, granularity and round-trip series measure by name.
CELERY = "celery"


def present(series: Series, wanted: tuple[str, ...]) -> list[str]:
    """The executors of `wanted` that are registered; each absent one is recorded as skipped."""
    found = []
    for name in wanted:
        if name in workers.EXECUTORS:
            found.append(name)
        else:
            series.skip(
                name,
                f"no {name!r} executor in workers.EXECUTORS in this build, so its points are not measured",
            )
    return found


def every_way(kind: str, worker_count: int) -> list[Plan]:
    """Every registered executor and IPC that can run `kind`, at the default start method, without
    the serial baseline."""
    return [plan for plan in workers.variants(kind, worker_count) if plan.executor != "serial"]


def serial(kind: str) -> Plan:
    return workers.plan(kind, "serial", 1)


#: The broker a celery point runs on beside the default deployment (the embedded Redis).
RABBITMQ = "rabbitmq"


def with_rabbitmq(series: Series, plans: list[Plan]) -> list[Plan]:
    """`plans`, each celery plan followed by the same on a private RabbitMQ node (`--broker
    rabbitmq`), to be measured in the same rounds — or `plans` as they are, the RabbitMQ point
    recorded as skipped in one line, where no node can run here or a broker is configured (that
    external broker is then the only one measured)."""
    celery = [plan for plan in plans if plan.executor == CELERY and plan.broker is None]
    if not celery:
        return plans
    from workers.celery.brokers import rabbitmq
    from workers.celery.settings import ENV_BROKER, SettingsError, settings

    try:
        configured = settings().broker_configured
    except SettingsError:
        configured = False  # the celery points themselves say what is wrong
    try:
        rabbitmq.server_binary()
        reason = f"{ENV_BROKER} is set: only that broker is measured" if configured else None
    except RuntimeError as error:
        reason = str(error)
    if reason is not None:
        series.skip(f"{CELERY}/{RABBITMQ}", reason)
        return plans
    return [
        each
        for plan in plans
        for each in ((plan, dataclasses.replace(plan, broker=RABBITMQ)) if plan in celery else (plan,))
    ]
