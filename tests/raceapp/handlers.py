"""One receiver, steered by the payload's ``"race"`` object (all keys optional):

``log``
    A file to which each start of the handler appends a line: a count of handler runs
    that survives rollbacks, and a way for the test to see that the handler is running.
``fail_unless``
    A file: while it does not exist, the handler raises (after its database write).
``hold_until``
    A file: the handler waits until it exists before returning (a slow handler).
``sleep``
    Seconds to sleep, so that concurrent deliveries overlap.

Every run writes one ``HandlerRecord``, so committed runs can be counted in the database.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from django_klarefi.models import Event
from tests.handler_effects import hold_until, log_run
from tests.testapp.models import HandlerRecord

HOLD_LIMIT_SECONDS = 90


class RaceHandlerError(RuntimeError):
    pass


def race_handler(sender: type[Event], event: Event, **kwargs: Any) -> None:
    options = event.payload.get("race") or {}
    if "log" in options:
        log_run(options["log"], event.event_id)
    HandlerRecord.objects.create(event_id=event.event_id, handler="race")
    if "sleep" in options:
        time.sleep(float(options["sleep"]))
    if "fail_unless" in options and not Path(options["fail_unless"]).exists():
        # The payload in the message: the secret-leak test checks that this is harmless.
        raise RaceHandlerError(f"handler failed on purpose for payload {event.payload!r}")
    if "hold_until" in options:
        hold_until(options["hold_until"], limit=HOLD_LIMIT_SECONDS, error=RaceHandlerError)


def race_payload(event_id: str, log: Path, **race: object) -> dict[str, object]:
    return {
        "id": event_id,
        "event": "case.completed",
        "case_id": f"case_{event_id}",
        "race": {"log": str(log), **{key: str(value) for key, value in race.items()}},
    }


def handler_runs(log: Path) -> Counter[str]:
    """How many times the handler started, per event id (rolled-back runs included)."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def committed_runs(event_id: str) -> int:
    return HandlerRecord.objects.filter(event_id=event_id).count()
