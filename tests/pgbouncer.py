"""A private PgBouncer in transaction pooling mode, in front of the test PostgreSQL.

Many deployments reach PostgreSQL through PgBouncer with ``pool_mode = transaction``: a
client has a server connection only for the length of a transaction, so nothing of a
session survives from one transaction to the next. The servers and workers a test
starts connect through :func:`pgbouncer` (see the ``servers_database`` fixture in
tests/conftest.py) to show that the claim, the row locks and the idle bound hold there.

Debian's ``pgbouncer`` package provides the binary (``.ci/run`` installs it); the system
service is not used: each call starts a process of its own, with its own ini and
userlist in a temporary directory, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port

INSTALL_HINT = "Install Debian's pgbouncer (apt-get install pgbouncer); .ci/run does."

#: PgBouncer refuses to run as root; it is started as this user then.
UNPRIVILEGED_USER = "nobody"


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        raise RuntimeError(f"The PgBouncer tests need the pgbouncer binary. {INSTALL_HINT}")
    return found


@contextlib.contextmanager
def pgbouncer(
    *, host: str, port: int, user: str, password: str, pool_mode: str = "transaction"
) -> Iterator[int]:
    """Run PgBouncer on 127.0.0.1 in front of PostgreSQL at ``host:port``, for every
    database, with one user; yield its port."""
    listen = free_port()
    with tempfile.TemporaryDirectory(prefix="klarefi-pgbouncer-") as directory:
        folder = Path(directory)
        (folder / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {listen}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {folder / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            "max_client_conn = 500\n"
            "default_pool_size = 40\n"
            # PostgreSQL ends sessions on its own (the idle bound): hand the next client a
            # fresh server connection rather than a dead one.
            "server_check_delay = 0\n"
        )
        command = [pgbouncer_binary(), str(folder / "pgbouncer.ini")]
        if os.geteuid() == 0:
            _readable_by(folder, UNPRIVILEGED_USER)
            command[1:1] = ["-u", UNPRIVILEGED_USER]
        (ROOT / ".artifacts").mkdir(exist_ok=True)
        with (
            open(ROOT / ".artifacts" / f"pgbouncer-{listen}.log", "wb") as log,
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as process,
        ):
            try:
                _wait_for_port(listen, process)
                yield listen
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _readable_by(folder: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for path in (folder, *folder.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}; see .artifacts/")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"pgbouncer did not listen on {port} within {timeout}s")


#: The marks of a test (or a parameter) whose servers reach PostgreSQL through PgBouncer.
BEHIND_PGBOUNCER = [pytest.mark.postgres, pytest.mark.pgbouncer]

#: Parametrize the ``servers_database`` fixture (``indirect=True``) with these to run a
#: test with its servers connected directly and through PgBouncer.
ROUTES = ["direct", pytest.param("pgbouncer", marks=BEHIND_PGBOUNCER)]
