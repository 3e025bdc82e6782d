"""Receivers for servers and workers started by the task-mode tests.

Each writes one ``HandlerRecord`` per run (named like the ``handlers`` fixture's: "typed"
and "event_received"), so committed runs can be counted in the database. The catch-all
one is steered by the payload's optional ``"task_test"`` object:

``log``
    A file to which each start appends "<pid> <event id>": a count of runs that survives
    rollbacks, and a way for the test to see which worker process is running the handler.
``hold_until``
    A file: the handler waits until it exists before returning.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django_klarefi.models import Event
from tests.testapp.models import HandlerRecord

HOLD_LIMIT_SECONDS = 120


class HeldTooLong(RuntimeError):
    pass


def typed_handler(sender: type[Event], event: Event, **kwargs: Any) -> None:
    HandlerRecord.objects.create(event_id=event.event_id, handler="typed")


def catch_all_handler(sender: type[Event], event: Event, **kwargs: Any) -> None:
    options = event.payload.get("task_test") or {}
    if "log" in options:
        fd = os.open(options["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {event.event_id}\n".encode())
        finally:
            os.close(fd)
    HandlerRecord.objects.create(event_id=event.event_id, handler="event_received")
    if "hold_until" in options:
        release = Path(options["hold_until"])
        deadline = time.monotonic() + HOLD_LIMIT_SECONDS
        while not release.exists():
            if time.monotonic() > deadline:
                raise HeldTooLong(f"{release} was not created")
            time.sleep(0.02)
