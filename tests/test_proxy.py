"""The TCP proxy the fault and stale-session tests put in front of the database
(tests/raceapp/proxy.py): what ``freeze()`` and ``thaw()`` do, on a local echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.raceapp.proxy import CuttableProxy


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_frozen_connection_carries_nothing_until_thawed_and_new_ones_flow():
    with echo_server() as upstream, CuttableProxy(upstream) as proxy:
        frozen = connect(proxy.port)
        frozen.sendall(b"before")
        assert frozen.recv(1024) == b"before"

        assert proxy.freeze() == 1
        frozen.sendall(b"during")
        frozen.settimeout(0.5)
        with pytest.raises(TimeoutError):
            frozen.recv(1024)  # neither carried there nor back

        # A connection made after the freeze is carried as usual.
        fresh = connect(proxy.port)
        fresh.sendall(b"fresh")
        assert fresh.recv(1024) == b"fresh"

        proxy.thaw()
        frozen.settimeout(5)
        assert frozen.recv(1024) == b"during"  # what waited is delivered
        frozen.close()
        fresh.close()


def test_a_frozen_connection_keeps_its_close_from_the_other_end():
    """The client goes away while frozen: the server's end stays open until the thaw."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        CuttableProxy(listener.getsockname()[1]) as proxy,
    ):
        client = connect(proxy.port)
        server, _ = listener.accept()
        server.settimeout(0.5)

        # The proxy adds the link just after its upstream connection is accepted.
        deadline = time.monotonic() + 5
        while proxy.freeze() != 1:
            assert time.monotonic() < deadline, "the proxy never carried the connection"
            time.sleep(0.01)
        client.close()
        with pytest.raises(TimeoutError):
            server.recv(1024)  # no end-of-file: the server does not hear of the close

        proxy.thaw()
        server.settimeout(5)
        assert server.recv(1024) == b""
        server.close()
