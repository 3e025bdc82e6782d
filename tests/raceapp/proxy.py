"""A TCP proxy on 127.0.0.1 that a test can cut or freeze, to take the database away from
a server.

The shared PostgreSQL server is never stopped: the server under test connects through
this proxy instead. ``cut()`` closes every connection and refuses new ones until
``restore()``: the database went away, and the server hears of it. ``freeze()`` stops the
connections open now from carrying anything, in either direction, and closes none, until
``thaw()``: a frozen host or a network partition, which neither end hears of. A frozen
connection also keeps its close to itself: when the client process dies, the server's
end stays open. Connections made after ``freeze()`` are carried as usual (a redelivery
reaching the database from elsewhere).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

# How often a pump looks again at whether its link is frozen or closed.
_POLL_SECONDS = 0.05


class _Link:
    """One proxied connection: its two sockets, and whether it carries bytes."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.sockets = (client, server)
        self.flowing = threading.Event()
        self.flowing.set()
        # Held by a pump while it reads and forwards: freeze() takes it after clearing
        # flowing, so that no read already past the check carries a byte (or a close) on.
        self.gate = threading.Lock()

    def close(self) -> None:
        self.flowing.set()  # wakes its pumps, which then find the sockets closed
        for sock in self.sockets:
            _close(sock)


class CuttableProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._up = True
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(timeout=5)

    def cut(self) -> None:
        """Close every proxied connection (frozen ones too), and close new ones at once
        until restored."""
        with self._lock:
            self._up = False
            links, self._links = self._links, set()
        for link in links:
            link.close()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def freeze(self) -> int:
        """Stop every connection open now from carrying bytes, in both directions, without
        closing it; how many were frozen. New connections are carried as usual."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.flowing.clear()
            with link.gate:  # until a read already under way has been carried
                pass
        return len(links)

    def thaw(self) -> None:
        """Let the frozen connections carry bytes again: what waited is delivered then,
        a close included."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.flowing.set()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(link, source, target), daemon=True
                ).start()

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                # A frozen link reads nothing, so that neither data nor a close gets through.
                link.flowing.wait()
                readable, _, _ = select.select([source], [], [], _POLL_SECONDS)
                if not readable:
                    continue
                with link.gate:
                    if not link.flowing.is_set():
                        continue
                    data = source.recv(65536)
                    if data:
                        target.sendall(data)
                if not data:
                    break
        except (OSError, ValueError):  # ValueError: select() on a socket closed meanwhile
            pass
        finally:
            with self._lock:
                self._links.discard(link)
            link.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
