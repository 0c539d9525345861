"""The entry point of Celery's own CLI: `celery -A tasks ...` finds the app here.

Celery's `-A tasks` looks for `tasks.app`, then `tasks.celery`, then imports the module `tasks.celery`
and takes its `app` (celery.app.utils.find_app). This module is that last step, and the one deliberate
exception to the layering (tasks -> workers -> conquer, nothing climbing back): it imports the Celery
side, `workers.celery.app`. Nothing in the product imports it — so importing `tasks` never loads
Celery — only Celery's CLI does, by name.

Usage::

    celery -A tasks worker --loglevel=INFO
    celery -A tasks inspect ping
    celery -A tasks call conquer.chunk --args '[{"kind": "sum", "index": 0, "start": 1, "stop": 101}]'
"""

from __future__ import annotations

from workers.celery.app import app

__all__ = ["app"]
