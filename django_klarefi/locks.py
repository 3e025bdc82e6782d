"""Locks that let concurrent deliveries and attempts of one event answer at once, never wait.

* :func:`claim`: on PostgreSQL, before a new event's INSERT, an advisory lock on its id and a
  look for a stored row, in one statement.
* :func:`lock_event`: a stored event's row, locked for an attempt (``NOWAIT``).
* :func:`count_processed_redelivery`: the one UPDATE that counts a redelivery of a processed
  event, skipping a locked row.

SQLite has no row locks: it writes one transaction at a time, and these fall back to that.
"""

from __future__ import annotations

import enum
from datetime import datetime

from django.db import DatabaseError, connections
from django.db.models import F

from django_klarefi.models import Event

__all__ = [
    "ADVISORY_LOCK_CLASS",
    "Claim",
    "EventLocked",
    "claim",
    "count_processed_redelivery",
    "lock_event",
]

Status = Event.Status

# The first key of django-klarefi's PostgreSQL advisory locks (the second is a hash of the
# event id), so that they do not meet the advisory locks of other code: "klar" in ASCII.
ADVISORY_LOCK_CLASS = 0x6B6C6172


class EventLocked(Exception):
    """Another transaction holds the event (its claim, or its row's lock)."""


class Claim(enum.Enum):
    CLAIMED = "claimed"
    STORED = "stored"
    BUSY = "busy"


def claim(using: str, event_id: str) -> Claim:
    """Before a new event's INSERT, on PostgreSQL: claim the event id for this transaction.

    An INSERT of an id whose row is uncommitted (a first delivery running its handlers)
    or being updated or deleted (a receiver saving its event, a prune batch) would wait on
    the unique index for as long as that transaction runs. One statement instead takes an
    advisory lock on the id, held until this transaction ends, and looks for a committed
    row, which a plain read never waits for: ``BUSY`` when another delivery of the id
    holds the claim, ``STORED`` when the row exists (a redelivery: no INSERT is tried),
    else ``CLAIMED``. Elsewhere always ``CLAIMED`` (SQLite writes one at a time).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return Claim.CLAIMED
    table = connection.ops.quote_name(Event._meta.db_table)
    column = connection.ops.quote_name("event_id")
    # Only quoted identifiers are formatted into the SQL; every value is a parameter.
    sql = (
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)), "  # noqa: S608
        f"EXISTS (SELECT 1 FROM {table} WHERE {column} = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ADVISORY_LOCK_CLASS, event_id, event_id])
        claimed, stored = cursor.fetchone()
    if stored:
        return Claim.STORED
    return Claim.CLAIMED if claimed else Claim.BUSY


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


def count_processed_redelivery(event_id: str, using: str, now: datetime) -> bool:
    """Fast path: count a redelivery of a processed event with one UPDATE.

    It never waits on an attempt in flight. A first attempt's row is not committed as
    processed, so the WHERE clause does not match it. A forced reprocess holds the
    committed processed row's lock: on PostgreSQL the UPDATE skips the locked row (and the
    slow path's NOWAIT lock answers ``IN_FLIGHT``); on SQLite it queues on the write lock.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return bool(
            Event.objects.using(using)
            .filter(event_id=event_id, status=Status.PROCESSED)
            .update(deliveries=F("deliveries") + 1, last_received_at=now)
        )
    # One statement in autocommit: Django's ORM allows FOR UPDATE only inside a
    # transaction, which would cost a BEGIN and a COMMIT on every redelivery.
    options = Event._meta
    table = connection.ops.quote_name(options.db_table)
    pk, event_id_column, status, deliveries, received = (
        connection.ops.quote_name(str(options.get_field(name).column))  # type: ignore[union-attr]
        for name in ("id", "event_id", "status", "deliveries", "last_received_at")
    )
    # Only quoted identifiers are formatted into the SQL; every value is a parameter.
    sql = (
        f"UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s "  # noqa: S608
        f"WHERE {pk} = (SELECT {pk} FROM {table} WHERE {event_id_column} = %s "
        f"AND {status} = %s FOR NO KEY UPDATE SKIP LOCKED)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                options.get_field("last_received_at").get_db_prep_value(now, connection),
                event_id,
                Status.PROCESSED.value,
            ],
        )
        return bool(cursor.rowcount)
