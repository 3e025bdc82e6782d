"""Receivers for servers and workers started by the task-mode tests.

Each writes one ``HandlerRecord`` per run (named like the ``handlers`` fixture's: "typed"
and "event_received"), so committed runs can be counted in the database. The catch-all
one is steered by the payload's optional ``"task_test"`` object:

``log``
    A file to which each start appends "<pid> <event id>": a count of runs that survives
    rollbacks, and a way for the test to see which worker process is running the handler.
``hold_until``
    A file: the handler waits until it exists before returning.
``meddle``
    What the handler does to its own event, as ordinary receiver code does:
    ``"refresh"`` (``refresh_from_db()``), ``"refresh_and_save"``, ``"update"`` (a queryset
    ``update()`` of its row's bookkeeping fields).
``fail_unless``
    A file: while it does not exist, the handler raises (after its database write).
"""

from __future__ import annotations

from pathlib import Path
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
    meddle = options.get("meddle")
    if meddle in ("refresh", "refresh_and_save"):
        event.refresh_from_db()
    if meddle == "refresh_and_save":
        event.save()
    if meddle == "update":
        Event.objects.filter(pk=event.pk).update(status="pending", attempts=0, error="")
    if "fail_unless" in options and not Path(options["fail_unless"]).exists():
        raise HeldTooLong(f"{options['fail_unless']} does not exist yet")
    if "hold_until" in options:
        hold_until(options["hold_until"], limit=HOLD_LIMIT_SECONDS, error=HeldTooLong)
