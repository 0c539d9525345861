"""What `conquer bench` shows on stderr while it runs: a bar per series on a terminal, and one line per
finished series everywhere (a full run takes a quarter of an hour; a log should say where it is)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conquer.bench.points import Series


class Reporter:
    """`check` runs after every measurement (`tick`): the place to raise a pending Ctrl-C."""

    def __init__(self, bar: bool, check: Callable[[], None] = lambda: None) -> None:
        self._check = check
        self._bar_enabled = bar
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Reporter:
        if self._bar_enabled:
            from conquer.render import bars

            self._bar = bars()
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def begin(self, series: Series, runs: int) -> None:
        """Start showing `series`, which will take `runs` measurements."""
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(series.title, total=runs)

    def tick(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)
        self._check()

    def end(self, series: Series) -> None:
        failed = sum(1 for point in series.points if not point.ok)
        flagged = sum(1 for point in series.points if point.ok and (point.flags or point.disturbed()))
        load = series.load_after[0] if series.load_after else None
        parts = [f"{len(series.points)} points in {series.duration_s:.1f} s"]
        if load is not None:
            parts.append(f"load {load:.2f}")
        if failed:
            parts.append(f"{failed} FAILED")
        if flagged:
            parts.append(f"{flagged} flagged (see results.md)")
        if series.skipped:
            parts.append("skipped: " + ", ".join(item["what"] for item in series.skipped))
        self.line(f"{series.name}: {'; '.join(parts)}")

    def line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
