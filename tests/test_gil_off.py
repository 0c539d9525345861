"""On a free-threaded build, nothing conquer imports switches the GIL back on — in the processes the
tests start as well as in the test process itself (which the plugin tests/gil_off.py checks at the end
of the run): the `conquer` CLI and Celery workers import more than the tests do (rich, the worker's
pools, Flower's tornado)."""

from __future__ import annotations

import pytest

from conquer.machine import free_threaded_build
from tests.conftest import fresh_python

pytestmark = pytest.mark.skipif(
    not free_threaded_build(), reason="not a free-threaded build: no GIL to keep off"
)

#: What a `celery worker` and Flower load beyond conquer's own modules.
WORKER_AND_FLOWER = (
    "celery.bin.celery", "celery.worker.consumer", "celery.concurrency.prefork",
    "celery.concurrency.thread", "kombu.transport.redis", "flower.app",
)  # fmt: skip

EVERY_MODULE = f"""
import importlib, pkgutil, sys, warnings
# The warning CPython gives when an import switches the GIL on names the module: make it an error.
warnings.simplefilter("error", RuntimeWarning)
names = []
for package in ("tasks", "workers", "conquer", "demos"):
    root = importlib.import_module(package)
    found = pkgutil.walk_packages(root.__path__, package + ".")
    names += [info.name for info in found if not info.name.endswith(".__main__")]  # runs the CLI
names += {list(WORKER_AND_FLOWER)!r}
for name in names:
    importlib.import_module(name)
print(len(names), sys._is_gil_enabled())
"""


def test_importing_every_module_leaves_the_gil_off() -> None:
    # The last line: demos.start_methods prints at import, on purpose (its lesson is what runs then).
    count, gil = fresh_python(EVERY_MODULE).splitlines()[-1].split()
    assert int(count) > 50  # every module of the four packages, not a walk that found nothing
    assert gil == "False"
