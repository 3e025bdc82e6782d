"""The lock an attempt holds on a stored event's row, taken so that nothing ever waits.

:func:`lock_event` locks the row for an attempt (``NOWAIT``): a second attempt at the same
event elsewhere fails at once with :class:`EventLocked` instead of waiting. The claim on a
new event's id, the other way a delivery avoids waiting, is part of its INSERT (see
:mod:`django_klarefi.storing`). SQLite has no row locks: it writes one transaction at a
time, and :func:`lock_event` falls back to that.
"""

from __future__ import annotations

from django.db import DatabaseError, connections
from django.db.models import F

from django_klarefi.models import Event

__all__ = ["EventLocked", "is_lock_not_available", "lock_event"]


class EventLocked(Exception):
    """Another transaction holds the event (its claim, or its row's lock)."""


def lock_event(using: str, event_id: str) -> Event | None:
    """The event's row, locked for this transaction; None when there is none.

    On PostgreSQL (and other databases with ``SELECT ... FOR UPDATE NOWAIT``) a row that
    another transaction has locked raises ``EventLocked`` at once. The lock is ``FOR NO
    KEY UPDATE`` where the database has it: it does not conflict with the ``KEY SHARE``
    locks that inserting rows with a foreign key to the event take.
    """
    connection = connections[using]
    events = Event.objects.using(using).filter(event_id=event_id)
    if connection.features.has_select_for_update_nowait:
        no_key = connection.features.has_select_for_no_key_update
        try:
            return events.select_for_update(nowait=True, no_key=no_key).first()
        except DatabaseError as exc:
            if is_lock_not_available(exc):
                raise EventLocked from exc
            raise
    # SQLite has no row locks: write before reading, so that this transaction takes the
    # database's write lock first (waiting out the busy timeout) and attempts run one at
    # a time. The UPDATE changes nothing.
    events.update(attempts=F("attempts"))
    return events.first()


def is_lock_not_available(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    # PostgreSQL's lock_not_available (psycopg 3: sqlstate, psycopg2: pgcode); MySQL's
    # ER_LOCK_NOWAIT.
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == "55P03" or getattr(cause, "args", (None,))[:1] == (3572,)
