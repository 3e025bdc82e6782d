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

from typing import Any

from django_klarefi.models import Event
from tests.handler_effects import hold_until, log_run
from tests.testapp.models import HandlerRecord

HOLD_LIMIT_SECONDS = 120


class HeldTooLong(RuntimeError):
    pass


def typed_handler(sender: type[Event], event: Event, **kwargs: Any) -> None:
    HandlerRecord.objects.create(event_id=event.event_id, handler="typed")


def catch_all_handler(sender: type[Event], event: Event, **kwargs: Any) -> None:
    options = event.payload.get("task_test") or {}
    if "log" in options:
        log_run(options["log"], event.event_id)
    HandlerRecord.objects.create(event_id=event.event_id, handler="event_received")
    if "hold_until" in options:
        hold_until(options["hold_until"], limit=HOLD_LIMIT_SECONDS, error=HeldTooLong)
