"""Side effects for the receivers that server and worker processes run in tests."""

from __future__ import annotations

import os
import time
from pathlib import Path


def log_run(log: str | Path, event_id: str) -> None:
    """Append "<pid> <event id>" to ``log``: a count of handler starts that survives
    rollbacks, and shows the test which process runs the handler. One write, atomic
    with O_APPEND, so concurrent processes never interleave lines."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.getpid()} {event_id}\n".encode())
    finally:
        os.close(fd)


def hold_until(release: str | Path, *, limit: float, error: type[Exception]) -> None:
    """Block until the file ``release`` exists; raise ``error`` after ``limit`` seconds."""
    path = Path(release)
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise error(f"{path} was not created within {limit} seconds")
        time.sleep(0.02)
