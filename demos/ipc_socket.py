"""IPC by socket: the parent listens on 127.0.0.1 and a free port; each worker process connects, reads a
range as one line of JSON, and answers with its partial sum as another.

A socket is the one IPC here that also works between machines — the workers are given nothing but the
address. The protocol is plain text, one JSON document per line, so any language could take part; it is
what a broker speaks underneath, minus everything a broker adds. Every socket operation has a timeout.

Usage::

    conquer demo ipc-socket
    conquer demo ipc-socket --workers 4
    python -m demos.ipc_socket
"""

from __future__ import annotations

import json
import multiprocessing
import socket

from demos.common import JOIN_TIMEOUT_S, add_job_options, argument_parser, run, running, say, sum_job, verify
from tasks import Chunk, Job, run_chunk, split


def work(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=JOIN_TIMEOUT_S) as connection:
        stream = connection.makefile("rwb")
        chunk = Chunk.from_message(json.loads(stream.readline()))
        say(f"connected from port {connection.getsockname()[1]}, got chunk {chunk.index}")
        answer = {"index": chunk.index, "partial": run_chunk(chunk)}
        stream.write(json.dumps(answer).encode() + b"\n")
        stream.flush()


def serve(listener: socket.socket, job: Job) -> dict[int, int]:
    """Give each connecting worker one range, then read every worker's answer."""
    streams = []
    for chunk in split(job):
        connection, peer = listener.accept()
        connection.settimeout(JOIN_TIMEOUT_S)
        stream = connection.makefile("rwb")
        stream.write(json.dumps(chunk.to_message()).encode() + b"\n")  # a range, never the numbers
        stream.flush()
        streams.append((connection, stream))
        say(f"sent chunk {chunk.index} to the worker at port {peer[1]}")
    partials = {}
    for connection, stream in streams:
        with connection, stream:
            answer = json.loads(stream.readline())
        partials[answer["index"]] = answer["partial"]
        say(f"read partial {answer['partial']} of chunk {answer['index']}")
    return partials


def main() -> int:
    parser = argument_parser(__spec__.name, __doc__)
    add_job_options(parser)
    job = sum_job(parser.parse_args())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(JOIN_TIMEOUT_S)
        address = listener.getsockname()
        say(f"listening on {address[0]}:{address[1]}")
        workers = [
            multiprocessing.Process(target=work, args=(address,), name=f"socket-worker-{number}")
            for number in range(job.chunks)
        ]
        with running(workers):
            partials = serve(listener, job)
    return 0 if verify(job, sum(partials.values())) else 1


if __name__ == "__main__":
    run(main)
