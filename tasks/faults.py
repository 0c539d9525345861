"""Fault injection: make the chunk holding one item fail, fail for a while, stall, or lie — on purpose.

A fault travels inside the job's messages as a spec of a few bytes (its size never grows with n), and
strikes only the chunk whose range holds its item:

- ``fail@ITEM``: the chunk raises `InjectedFault` on every attempt — a deterministic error. Every
  executor fails the job with a message naming the chunk's range; Celery does not retry it.
- ``transient:K@ITEM``: the chunk raises `TransientFault` on its first K attempts, then succeeds.
  Celery retries it with exponential backoff (up to its retry cap, `workers.celery.app.CHUNK_RETRIES`),
  so the job succeeds if K is within the cap. In-host executors have no retries: the first attempt
  fails the run, as any error does.
- ``slow:S@ITEM``: the chunk sleeps S seconds before computing. Through Celery, past the chunk's soft
  time limit it fails cleanly with a message naming the limit; the worker goes on serving. In-host
  executors have no time limit: the run just takes S seconds longer.
- ``stuck:S@ITEM``: as slow, but swallowing every exception meant to stop it. Through Celery only the
  hard time limit ends it, by killing the pool process (which Celery replaces). In-host, it is slow.
- ``corrupt@ITEM``: the chunk returns a wrong partial (one more than the right one) and raises nothing:
  the bug no executor can see. Only the independent check catches it — every command that prints an
  answer then exits 7 (WRONG_ANSWER), naming the answer and the check. It is how the tests prove
  that exit 7 is reachable, and how a user can see that the ✓ beside every answer is a real check.

`stuck` is the chunk written with ``except BaseException: pass`` around its work: the soft limit's
exception never gets out, and only the hard limit (a signal from outside) ends it.

`--fail-at ITEM` is ``fail@ITEM``. Nothing here imports Celery: the Celery app decides what to retry.

Usage::

    fault = parse("transient:2@600")
    fault.spec                         # 'transient:2@600', what the messages carry
    strike(chunk.fault, chunk.start, chunk.stop, attempt=0)   # at the start of a chunk
    corrupt(chunk.fault, chunk.start, chunk.stop, partial)    # on the partial it computed
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

FAIL, TRANSIENT, SLOW, STUCK, CORRUPT = "fail", "transient", "slow", "stuck", "corrupt"
MODES = (FAIL, TRANSIENT, SLOW, STUCK, CORRUPT)
#: The modes that take no amount (written MODE@ITEM).
PLAIN = (FAIL, CORRUPT)

#: A transient fault fails at most this many attempts (the Celery retry cap is far lower: a bigger
#: K shows what happens when a fault outlasts the retries).
ATTEMPTS_MAX = 100
#: A slow or stuck chunk stalls at most this long (10 minutes): long enough to exceed any time limit
#: worth testing, short enough that a forgotten fault in an in-host run ends by itself.
SECONDS_MAX = 600.0

SYNTAX = "fail@ITEM, transient:K@ITEM, slow:S@ITEM, stuck:S@ITEM or corrupt@ITEM"


class FaultError(ValueError):
    """A fault spec that cannot be parsed (the message says why, in one line)."""


class InjectedFault(RuntimeError):
    """Raised by the chunk that holds a `fail` fault's item: a deterministic error, never retried."""


class TransientFault(RuntimeError):
    """Raised by the chunk that holds a `transient` fault's item, on its first K attempts only.

    The only exception the Celery app retries: it stands for an error that heals (a timeout, a
    dropped connection). Retrying a deterministic error would only fail the same way K more times.
    """


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: `mode` strikes the chunk holding `item`. `amount` is the number of failing
    attempts (transient) or the seconds to stall (slow, stuck); unused for fail and corrupt."""

    mode: str
    item: int
    amount: float = 0

    @property
    def spec(self) -> str:
        """The canonical text of the fault, as the messages carry it."""
        if self.mode in PLAIN:
            return f"{self.mode}@{self.item}"
        return f"{self.mode}:{self.amount:g}@{self.item}"

    def holds(self, start: int, stop: int) -> bool:
        """Does the chunk [start, stop) hold this fault's item?"""
        return start <= self.item < stop


def parse(text: str, *, number: Callable[[str], int] = int) -> Fault:
    """The fault `text` describes (see the module's table), or FaultError saying what is wrong.

    `number` reads ITEM (the CLI passes its own, which also accepts `1e6`); the item is checked
    against the job's n by `Job`, not here."""
    head, at, item_text = text.strip().partition("@")
    mode, colon, amount_text = head.partition(":")
    mode = mode.strip().lower()
    if not at or not item_text.strip() or mode not in MODES:
        raise FaultError(f"fault {text!r} must be one of {SYNTAX}")
    try:
        item = number(item_text.strip())
    except ValueError:
        raise FaultError(f"fault {text!r}: ITEM must be a whole number, got {item_text.strip()!r}") from None
    if mode in PLAIN:
        if colon:
            raise FaultError(f"fault {text!r}: {mode} takes no amount (write {mode}@ITEM)")
        return Fault(mode, item)
    if not colon:
        what = "K, the attempts that fail" if mode == TRANSIENT else "S, the seconds to stall"
        raise FaultError(f"fault {text!r}: {mode} needs {what} (write {mode}:N@ITEM)")
    amount = _amount(text, mode, amount_text.strip())
    return Fault(mode, item, amount)


def _amount(text: str, mode: str, amount_text: str) -> float:
    if mode == TRANSIENT:
        try:
            attempts = int(amount_text)
        except ValueError:
            raise FaultError(f"fault {text!r}: K must be a whole number of attempts") from None
        if not 1 <= attempts <= ATTEMPTS_MAX:
            raise FaultError(f"fault {text!r}: K must be between 1 and {ATTEMPTS_MAX}, got {attempts}")
        return attempts
    try:
        seconds = float(amount_text)
    except ValueError:
        raise FaultError(f"fault {text!r}: S must be a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= SECONDS_MAX):
        raise FaultError(f"fault {text!r}: S must be more than 0 and at most {SECONDS_MAX:g} s")
    return seconds


def striking(spec: str | None, start: int, stop: int) -> Fault | None:
    """The fault `spec` describes if it strikes the chunk [start, stop), else None."""
    if spec is None:
        return None
    fault = parse(spec)
    return fault if fault.holds(start, stop) else None


def trip(fault: Fault, attempt: int) -> float:
    """Raise the fault's error if this `attempt` (0 = the first run) must fail; otherwise return the
    seconds the chunk must stall before computing (0 for none; corrupt strikes only after it)."""
    if fault.mode == CORRUPT:
        return 0.0
    if fault.mode == FAIL:
        raise InjectedFault(f"injected fault at item {fault.item}")
    if fault.mode == TRANSIENT:
        if attempt < fault.amount:
            raise TransientFault(
                f"injected transient fault at item {fault.item} "
                f"(attempt {attempt + 1}; the first {fault.amount:g} fail)"
            )
        return 0.0
    return fault.amount


def strike(spec: str | None, start: int, stop: int, *, attempt: int = 0) -> None:
    """Apply the fault `spec` to the chunk [start, stop) on its `attempt`-th run: raise, stall, or
    (if it holds another item, or heals by now) do nothing."""
    fault = striking(spec, start, stop)
    if fault is None:
        return
    seconds = trip(fault, attempt)
    if fault.mode == STUCK:
        _stall_ignoring_everything(seconds)
    elif seconds:
        time.sleep(seconds)  # a signal handler's exception (the soft time limit) ends it early


async def strike_async(spec: str | None, start: int, stop: int, *, attempt: int = 0) -> None:
    """`strike` for a coroutine: the stall yields to the event loop (which has no time limit to
    ignore, so stuck is slow there)."""
    fault = striking(spec, start, stop)
    if fault is None:
        return
    seconds = trip(fault, attempt)
    if seconds:
        import asyncio

        await asyncio.sleep(seconds)


def corrupt(spec: str | None, start: int, stop: int, partial: int) -> int:
    """The partial the chunk [start, stop) returns: `partial`, or one more if the job's fault is
    ``corrupt`` and strikes this chunk. The same wrong value on every attempt, as a real bug would
    give, so a chunk run twice (redelivered) still agrees with itself."""
    fault = striking(spec, start, stop)
    return partial + 1 if fault is not None and fault.mode == CORRUPT else partial


def _stall_ignoring_everything(seconds: float) -> None:
    """Sleep `seconds`, swallowing every exception that would end it early (the soft time limit's
    SoftTimeLimitExceeded, SystemExit, KeyboardInterrupt): only a signal that kills the process —
    the hard time limit's SIGTERM/SIGKILL — stops this."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except BaseException:  # the bug being simulated: nothing gets out
            continue
