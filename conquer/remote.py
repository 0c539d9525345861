"""A `conquer.rounds.Site` in another interpreter: one long-lived `conquer.runner` process, driven
over JSON lines, for all the rows `conquer compare --python PATH` runs under PATH.

The runner is started in a process group of its own, and everything it starts stays in that group
(its multiprocessing workers, a fork server) or dies with it (the Celery stack's processes, in
sessions of their own, get SIGKILL from the kernel when it dies). So:

- it closes in order: asked to close, it tears its deployments down and exits; after TEARDOWN_S the
  group is killed;
- on Ctrl-C (which reaches only `conquer`'s own group) it gets SIGINT forwarded, so its run stops
  the way a run in `conquer` stops, then it closes as above;
- if it dies mid-comparison (killed, crashed), its rows fail with one line saying how it died, the
  group is killed at once — an orphaned worker of the dead runner would otherwise run on and disturb
  the other rows — and the other interpreters' rows go on.

Its death is seen when it happens, not when its stdout closes: a forked worker of the runner holds a
copy of that pipe, so the end of the file could come only after the worker does. On Linux a pidfd
says so at once; elsewhere the runner is polled every POLL_S while an answer is awaited.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any, NoReturn

from conquer import interpreters, runner
from conquer.interpreters import Interpreter
from conquer.rounds import Outcome, Prepared
from tasks import Job
from workers import Plan

#: How long a closing runner may take to tear down its deployments (a Celery stack stops in a few
#: seconds) and exit, before its group is killed.
TEARDOWN_S = 60.0
#: How long a started runner may take to say hello: the same as a probe.
HELLO_S = interpreters.PROBE_S
#: How long a runner whose answers stopped (its stdout closed) may take to finish exiting.
EXIT_S = 5.0
#: Where there is no pidfd: how often a runner awaited is checked for being alive.
POLL_S = 0.1


class RunnerDied(Exception):
    """The runner is gone; the message says how, in a line."""


class Remote:
    """A runner under `interpreter`: started on entry, closed (and its group killed) on exit. `env`
    adds to the environment it inherits (the bench's `builds` series sets the Celery pool so)."""

    def __init__(self, interpreter: Interpreter, env: dict[str, str] | None = None) -> None:
        self._interpreter = interpreter
        self._env = {**os.environ, **env} if env else None
        self._process: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._buffer = b""
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close(); a pipe could fill up)
        #: Why every request now fails, once the runner is gone.
        self._dead: str | None = None

    @property
    def interpreter(self) -> Interpreter:
        return self._interpreter

    def __enter__(self) -> Remote:
        command = [self._interpreter.executable, "-P", "-m", "conquer.runner", str(os.getpid())]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                process_group=0,
                env=self._env,
            )
        except OSError as error:
            self._dead = f"the runner under {self._interpreter.executable} could not start: {error.strerror}"
            return self
        try:
            if hasattr(os, "pidfd_open"):
                self._pidfd = os.pidfd_open(self._process.pid)
            hello = self._receive(time.monotonic() + HELLO_S)
            self._interpreter = Interpreter.from_dict(hello["hello"]["interpreter"])
        except RunnerDied as error:
            self._dead = str(error)
        except (KeyError, TypeError):
            with contextlib.suppress(RunnerDied):
                self._died(f"did not greet as conquer's runner does: {str(hello)[:80]}")
        except BaseException as error:  # Ctrl-C while it starts: no __exit__ will come
            self.close(interrupted=isinstance(error, KeyboardInterrupt))
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(interrupted=isinstance(error, KeyboardInterrupt))

    # ------------------------------------------------------------------------------ the site

    def prepare(self, plan: Plan) -> Prepared | str:
        try:
            return runner.prepared_of(self._ask({"op": "prepare", "plan": plan_dict(plan)}))
        except RunnerDied as error:
            return str(error)

    def run(self, job: Job, plan: Plan) -> Outcome:
        try:
            answer = self._ask({"op": "run", "job": job_dict(job), "plan": plan_dict(plan)})
            return runner.outcome_of(answer["outcome"])
        except RunnerDied as error:
            return Outcome(error=str(error))

    # ------------------------------------------------------------------------------ the channel

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._dead is not None or self._process is None or self._process.stdin is None:
            raise RunnerDied(self._dead or "the runner was never started")
        try:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._died()
        # No deadline of its own: a run takes as long as it takes in-process too (Ctrl-C ends it), and
        # the runner's death ends the wait at once.
        return self._receive(None)

    def _receive(self, deadline: float | None) -> dict[str, Any]:
        """The next answer; `RunnerDied` if the runner dies first or says nothing by `deadline`."""
        assert self._process is not None
        assert self._process.stdout is not None
        out = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            watched = [out] if self._pidfd is None else [out, self._pidfd]
            wait = POLL_S if self._pidfd is None else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._died(f"said nothing within {HELLO_S:g} s")
                wait = left if wait is None else min(wait, left)
            ready, _, _ = select.select(watched, [], [], wait)
            if out in ready:
                chunk = os.read(out, 1 << 16)
                if not chunk:
                    self._died()
                self._buffer += chunk
            elif ready or (self._pidfd is None and self._process.poll() is not None):
                self._take_the_rest(out)
                if b"\n" not in self._buffer:
                    self._died()
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            self._died(f"answered what is not conquer's runner protocol: {line[:80]!r}")
        return answer

    def _take_the_rest(self, out: int) -> None:
        """What an exited runner had written and was not read yet (never waiting for more)."""
        while select.select([out], [], [], 0)[0]:
            chunk = os.read(out, 1 << 16)
            if not chunk:
                return
            self._buffer += chunk

    def _died(self, how: str | None = None) -> NoReturn:
        """The runner is gone (or hopeless: `how`): kill what is left of its group, remember why, raise.
        A runner whose stdout closed is exiting: it gets EXIT_S to finish, so its own status is told."""
        self._stop(EXIT_S if how is None else 0.0)
        if how is None:
            how = self._how_it_ended()
        self._dead = f"the runner under {self._interpreter.executable} {how}"
        raise RunnerDied(self._dead)

    def _how_it_ended(self) -> str:
        assert self._process is not None
        code = self._process.returncode
        if code is not None and code < 0:
            return f"died (killed by {signal.Signals(-code).name})"
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        last = f": {lines[-1].strip()}" if lines else ""
        return f"died (exit status {code}{last})"

    # ------------------------------------------------------------------------------ the end

    def close(self, interrupted: bool = False) -> None:
        """Ask the runner to close (or forward Ctrl-C to it), wait up to TEARDOWN_S, kill its group
        — also if this wait is interrupted."""
        process = self._process
        try:
            if process is not None and process.returncode is None:
                if interrupted:
                    signal_group(process.pid, signal.SIGINT)
                elif self._dead is None and process.stdin is not None:
                    try:
                        process.stdin.write(b'{"op": "close"}\n')
                        process.stdin.flush()
                    except BrokenPipeError:
                        pass  # already gone: the group is killed below
                self._stop(TEARDOWN_S)
        finally:
            if process is not None:
                if process.returncode is None:
                    signal_group(process.pid, signal.SIGKILL)
                    process.wait()
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        stream.close()
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            self._errors.close()

    def _stop(self, grace: float) -> None:
        """Wait up to `grace` s for the runner to exit, then SIGKILL its group — the runner if it is
        still there, and what it left behind (an orphaned worker, a fork server) — and reap it. With a
        pidfd the group is signalled before the runner is reaped: until then its pid, the group's id,
        cannot be anyone else's. Without one, a runner found dead by polling is reaped already; its
        group is still signalled, as long as any of it is left the id stays its own."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            exited(process, self._pidfd, grace)
        signal_group(process.pid, signal.SIGKILL)
        process.wait()


def exited(process: subprocess.Popen[bytes], pidfd: int | None, timeout: float) -> bool:
    """Whether `process` exits within `timeout` s — without reaping it where a pidfd can tell."""
    if pidfd is not None:
        return bool(select.select([pidfd], [], [], timeout)[0])
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def signal_group(group: int, number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # nobody left in it
        os.killpg(group, number)


def job_dict(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in ("kind", "n", "chunks", "latency", "fail_at", "fault")}


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in ("executor", "workers", "ipc", "start_method", "broker")}
