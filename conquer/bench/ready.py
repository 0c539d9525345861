"""The child side of the `startup` series: report this process's pid, then exit.

It imports nothing beyond the standard library, so the time measured is the start method's own —
a fork, a fresh interpreter (spawn), or a fork of the fork server — not the cost of importing this
project (which the executors' workers also pay under spawn and forkserver).
"""

from __future__ import annotations

import os
from multiprocessing.connection import Connection


def report_ready(connection: Connection) -> None:
    connection.send(os.getpid())
    connection.close()
