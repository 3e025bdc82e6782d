"""Locks that let concurrent deliveries and attempts of one event answer at once, never wait.

* :func:`insert_or_count`: on PostgreSQL, a delivery's one statement: an advisory lock on
  its id (the claim), and the new event's INSERT or the count of a processed one's redelivery.
* :func:`lock_event`: a stored event's row, locked for an attempt (``NOWAIT``).
* :func:`count_processed_redelivery`: the one UPDATE that counts a redelivery of a processed
  event, skipping a locked row.

SQLite has no row locks: it writes one transaction at a time, and these fall back to that.
"""

from __future__ import annotations

import enum
from datetime import datetime

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, signals
from django.db.models.sql import InsertQuery

from django_klarefi.models import Event

__all__ = [
    "ADVISORY_LOCK_CLASS",
    "EventLocked",
    "Found",
    "count_processed_redelivery",
    "insert_or_count",
    "lock_event",
]

Status = Event.Status

# The first key of django-klarefi's PostgreSQL advisory locks (the second is a hash of the
# event id), so that they do not meet the advisory locks of other code: "klar" in ASCII.
ADVISORY_LOCK_CLASS = 0x6B6C6172


class EventLocked(Exception):
    """Another transaction holds the event (its claim, or its row's lock)."""


class Found(enum.Enum):
    """What :func:`insert_or_count` found for a delivery's event id."""

    #: The claim is taken and no row was stored: the event's row is inserted.
    INSERTED = "inserted"
    #: A processed row is stored: this delivery is counted on it.
    COUNTED = "counted"
    #: A row is stored that is not processed, or is locked by an attempt: lock it and see.
    STORED = "stored"
    #: No row is visible, and another transaction holds the claim on the id.
    BUSY = "busy"


def insert_or_count(using: str, event: Event) -> Found:
    """On PostgreSQL, a delivery's first statement: one round trip for the common cases.

    An INSERT of an id whose row is uncommitted (a first delivery running its handlers)
    or being updated or deleted (a receiver saving its event, a prune batch) would wait on
    the unique index for as long as that transaction runs. So one statement:

    * takes an advisory lock on the event id (the claim), held until this transaction
      ends, and looks for a committed row, which a plain read never waits for;
    * counts the delivery on a stored processed row (the UPDATE of
      :func:`count_processed_redelivery`, skipping a locked row): ``COUNTED``;
    * inserts ``event``'s row when the claim is taken and no row is stored: ``INSERTED``,
      and ``event`` has its primary key. ``pre_save`` and ``post_save`` are sent for it,
      as ``save()`` would.

    Otherwise ``STORED`` (a row that is not processed, or is locked) or ``BUSY`` (another
    delivery holds the claim). A row committed by another transaction after this
    statement's snapshot is still found by the unique index: that raises
    ``IntegrityError``, as a plain INSERT would. The INSERT is compiled by Django's own
    ``InsertQuery``, so the columns and the values' adaptation are the ORM's.
    """
    connection = connections[using]
    options = Event._meta
    fields = [field for field in options.local_concrete_fields if not field.primary_key]
    signals.pre_save.send(sender=Event, instance=event, raw=False, using=using, update_fields=None)
    query = InsertQuery(Event)
    query.insert_values(fields, [event])
    [(insert_sql, insert_params)] = query.get_compiler(using=using).as_sql()
    columns, _, values = insert_sql.partition(" VALUES ")
    if not (values.startswith("(") and values.endswith(")")):  # pragma: no cover
        raise DatabaseError(f"Unexpected INSERT from Django's compiler: {insert_sql}")
    table, pk, event_id, status, deliveries, received = _columns(
        connection, "id", "event_id", "status", "deliveries", "last_received_at"
    )
    # Only quoted identifiers and Django's own INSERT are formatted into the SQL; every
    # value is a parameter. Each part runs on the statement's one snapshot; the UPDATE and
    # the INSERT never meet one row (the INSERT needs no row stored, the UPDATE one).
    sql = (
        "WITH claim AS (SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS claimed, "  # noqa: S608
        f"EXISTS (SELECT 1 FROM {table} WHERE {event_id} = %s) AS stored), "
        f"counted AS (UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s "
        f"WHERE {pk} = (SELECT {pk} FROM {table} WHERE {event_id} = %s AND {status} = %s "
        f"FOR NO KEY UPDATE SKIP LOCKED) RETURNING {pk}), "
        f"inserted AS ({columns} SELECT {values[1:-1]} FROM claim "
        f"WHERE claimed AND NOT stored RETURNING {pk}) "
        "SELECT claimed, stored, (SELECT * FROM counted), (SELECT * FROM inserted) FROM claim"
    )
    params = [
        ADVISORY_LOCK_CLASS,
        event.event_id,
        event.event_id,
        options.get_field("last_received_at").get_db_prep_value(event.last_received_at, connection),
        event.event_id,
        Status.PROCESSED.value,
        *insert_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed, stored, counted, inserted = cursor.fetchone()
    if counted is not None:
        return Found.COUNTED
    if stored:
        return Found.STORED
    if not claimed:
        return Found.BUSY
    event.pk = inserted
    event._state.adding, event._state.db = False, using
    signals.post_save.send(
        sender=Event, instance=event, created=True, update_fields=None, raw=False, using=using
    )
    return Found.INSERTED


def _columns(connection: BaseDatabaseWrapper, *names: str) -> list[str]:
    """The quoted table name, then the quoted columns of the Event fields ``names``."""
    options = Event._meta
    quote = connection.ops.quote_name
    columns = [quote(str(options.get_field(name).column)) for name in names]  # type: ignore[union-attr]
    return [quote(options.db_table), *columns]


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
    table, pk, event_id_column, status, deliveries, received = _columns(
        connection, "id", "event_id", "status", "deliveries", "last_received_at"
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
