"""A TCP proxy for the drills that take a broker away at a chosen moment of a conversation: it listens
on 127.0.0.1 (a free port), connects each client to the broker (a (host, port), or a Unix socket
path), and forwards both ways from one thread. Subclasses decide what a client's bytes may carry on
(`passed`) and whether a new connection is let in (`admits`): a broker lost in the middle of a submit,
or right after a command's reachability check."""

from __future__ import annotations

import selectors
import socket
import threading
from contextlib import suppress
from typing import Self


class Proxy:
    def __init__(self, upstream: tuple[str, int] | str, name: str) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=name)

    def admits(self) -> bool:
        """Whether a new client connection is let through (else it is closed at once)."""
        return True

    def passed(self, received: bytes) -> tuple[bytes, bool]:
        """What of `received`, from a client, goes on to the broker; and whether the connection is
        closed after it (both ends)."""
        return received, False

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()

    def drop_all(self) -> None:
        """Close every connection (the listener stays)."""
        for key in list(self.selector.get_map().values()):
            if key.fileobj is not self.listener:
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def _serve(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.05):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._pump(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        if not self.admits():
            client.close()
            return
        if isinstance(self.upstream, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.upstream)
        else:
            upstream = socket.create_connection(self.upstream)
        self.selector.register(client, selectors.EVENT_READ, (upstream, True))
        self.selector.register(upstream, selectors.EVENT_READ, (client, False))

    def _pump(self, source: socket.socket, data: tuple[socket.socket, bool]) -> None:
        peer, from_client = data
        with suppress(OSError):
            received = source.recv(1 << 16)
            close = not received
            if from_client and received:
                received, close = self.passed(received)
            if received:
                peer.sendall(received)
            if not close:
                return
        for end in (source, peer):
            with suppress(KeyError, ValueError):
                self.selector.unregister(end)
            end.close()
