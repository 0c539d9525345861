"""A runner: measured runs made in this interpreter for a `conquer` running in another one.

`conquer compare --python PATH` starts one runner per interpreter given (`conquer.remote`) and keeps
it for the whole comparison. The runner holds a `conquer.rounds.Deployments` — the same site that
runs rows inside `conquer` when no `--python` is given — so its plans are deployed once (the Celery
stack under this interpreter), each run is metered here (the CPU time of *this* process tree, the
GIL's state in this process after the run), and everything is torn down when it closes.

It speaks JSON lines: one request on stdin, one answer on stdout.

- first, unasked: `{"hello": {"protocol": 1, "interpreter": {...}}}`
- `{"op": "prepare", "plan": {...}}` → `{"prepared": {"facts": ..., "cpu_note": ...}}` or
  `{"failed": "could not deploy ..."}`
- `{"op": "run", "job": {...}, "plan": {...}}` → `{"outcome": {"sample": {...}, "error": ..., ...}}`
- `{"op": "close"}`, or the end of stdin → tear down, exit 0. SIGINT (Ctrl-C, as `conquer` forwards
  it, or sent by the kernel when `conquer` dies) → tear down, exit 130.

Anything else written to stdout (a library's print, a worker's) goes to stderr instead: the answers
travel on a descriptor of their own.

Usage::

    python -P -m conquer.runner PARENT_PID
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict
from typing import IO, Any

from conquer import interpreters
from conquer.rounds import Deployments, Outcome, Prepared
from conquer.usage import Sample
from tasks import Job
from workers import Plan

#: prctl(2): the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def job_of(message: dict[str, Any]) -> Job:
    return Job(**message)


def plan_of(message: dict[str, Any]) -> Plan:
    return Plan(**message)


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    return {**asdict(outcome), "sample": outcome.sample.to_dict() if outcome.sample else None}


def outcome_of(message: dict[str, Any]) -> Outcome:
    sample = message.get("sample")
    return Outcome(**{**message, "sample": Sample(**sample) if sample else None})


def answer(request: dict[str, Any], deployments: Deployments) -> dict[str, Any]:
    plan = plan_of(request["plan"])
    if request["op"] == "prepare":
        prepared = deployments.prepare(plan)
        if isinstance(prepared, str):
            return {"failed": prepared}
        return {"prepared": asdict(prepared)}
    if request["op"] == "run":
        return {"outcome": outcome_to_dict(deployments.run(job_of(request["job"]), plan))}
    raise ValueError(f"unknown request {request['op']!r}")


def prepared_of(message: dict[str, Any]) -> Prepared | str:
    return str(message["failed"]) if "failed" in message else Prepared(**message["prepared"])


def die_with(parent: int) -> None:
    """SIGINT when `parent` dies, so a SIGKILLed `conquer` leaves no runner (Linux; elsewhere the end
    of stdin tells it, between runs)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before prctl: no signal will come
        raise KeyboardInterrupt


def serve(requests: IO[bytes], answers: IO[str]) -> None:
    def send(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    with Deployments() as deployments:
        send({"hello": {"protocol": interpreters.PROTOCOL, "interpreter": interpreters.this().to_dict()}})
        for line in requests:
            request = json.loads(line)
            if request["op"] == "close":
                break
            send(answer(request, deployments))


def main(argv: list[str]) -> int:
    # The answers get a descriptor of their own; fd 1 becomes stderr for whatever else prints.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        die_with(int(argv[0]) if argv else os.getppid())
        serve(sys.stdin.buffer, answers)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `conquer` is gone: nobody to answer
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
