"""A delivery's first write: insert a new event's row, or count a redelivery on the stored one.

* :func:`insert_or_count`: the new event's INSERT, which on PostgreSQL also claims the event
  id and counts a processed event's redelivery, in one statement; on SQLite an INSERT that
  does nothing when the id is stored, then the count.
* :func:`count_processed_redelivery`: the one UPDATE that counts a redelivery of a processed
  event, never waiting on a locked row.

Only quoted identifiers and the SQL of Django's own ``InsertQuery`` are formatted into the
statements here; every value is a parameter.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import signals
from django.db.models.sql import InsertQuery

from django_klarefi.models import Event

__all__ = ["ADVISORY_LOCK_CLASS", "Found", "count_processed_redelivery", "insert_or_count"]

Status = Event.Status

# The first key of django-klarefi's PostgreSQL advisory locks (the second is a hash of the
# event id), so that they do not meet the advisory locks of other code: "klar" in ASCII.
ADVISORY_LOCK_CLASS = 0x6B6C6172


class Found(enum.Enum):
    """What :func:`insert_or_count` found for a delivery's event id."""

    #: No row was stored (and, on PostgreSQL, the claim is taken): the row is inserted.
    INSERTED = "inserted"
    #: A processed row is stored: this delivery is counted on it.
    COUNTED = "counted"
    #: A row is stored that is not processed, or is locked by an attempt: lock it and see.
    STORED = "stored"
    #: PostgreSQL: no row is visible, and another transaction holds the claim on the id.
    BUSY = "busy"


def insert_or_count(using: str, event: Event, *, claim: bool = True) -> Found:
    """Insert ``event``'s row unless its id is stored; count the delivery if it is.

    On PostgreSQL with ``claim`` (sync mode), one statement; an INSERT of an id whose row
    is uncommitted (a first delivery running its handlers) or being updated or deleted (a
    receiver saving its event, a prune batch) would wait on the unique index for as long
    as that transaction runs, so the statement:

    * takes an advisory lock on the event id (the claim), held until this transaction
      ends, and looks for a committed row, which a plain read never waits for;
    * counts the delivery on a stored processed row (:func:`count_processed_redelivery`'s
      UPDATE, skipping a locked row): ``COUNTED``;
    * inserts the row when the claim is taken and no row is stored: ``INSERTED``;
    * otherwise ``STORED`` (a row that is not processed, or is locked) or ``BUSY``
      (another delivery holds the claim).

    On SQLite (3.35 or later, for ``RETURNING``), ``INSERT ... ON CONFLICT (event_id) DO
    NOTHING``, then, if it inserted nothing, the count: no failed INSERT to roll back.
    Elsewhere, and for PostgreSQL without ``claim`` (task mode, whose
    deliveries hold no uncommitted row for long), a plain INSERT. A row committed by
    another transaction after the look, and only then, raises ``IntegrityError`` from the
    unique index; so does any other constraint. ``pre_save`` and ``post_save`` are sent
    for an inserted row, as ``save()`` sends them, and ``event`` then has its primary key.
    """
    connection = connections[using]
    if connection.vendor == "postgresql" and claim:
        found = _claim_insert_or_count(connection, event)
    elif connection.vendor == "sqlite" and connection.features.can_return_columns_from_insert:
        found = _insert_unless_stored(connection, event)
        if found is Found.STORED and count_processed_redelivery(
            event.event_id, using, event.last_received_at
        ):
            found = Found.COUNTED
    else:
        event.save(force_insert=True, using=using)
        return Found.INSERTED
    if found is Found.INSERTED:
        event._state.adding, event._state.db = False, using
        signals.post_save.send(
            sender=Event, instance=event, created=True, update_fields=None, raw=False, using=using
        )
    return found


def count_processed_redelivery(event_id: str, using: str, now: datetime) -> bool:
    """Count a redelivery of a processed event with one UPDATE; whether there was one.

    It never waits on an attempt in flight. A first attempt's row is not committed as
    processed, so the WHERE clause does not match it. A forced reprocess holds the
    committed processed row's lock: on PostgreSQL the UPDATE skips the locked row (and the
    slow path's NOWAIT lock answers ``IN_FLIGHT``); on SQLite it queues on the write lock.
    One statement in autocommit: Django's ORM allows FOR UPDATE only inside a transaction,
    which would cost a BEGIN and a COMMIT on every redelivery.
    """
    connection = connections[using]
    table, pk, event_id_column, status, deliveries, received = quoted_columns(
        connection, "id", "event_id", "status", "deliveries", "last_received_at"
    )
    match = f"{event_id_column} = %s AND {status} = %s"
    if connection.vendor == "postgresql":
        match = f"{pk} = (SELECT {pk} FROM {table} WHERE {match} FOR NO KEY UPDATE SKIP LOCKED)"  # noqa: S608
    sql = f"UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s WHERE {match}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [_db_value(connection, now), event_id, Status.PROCESSED.value])
        return bool(cursor.rowcount)


def quoted_columns(connection: BaseDatabaseWrapper, *names: str) -> list[str]:
    """The quoted table name, then the quoted columns of the Event fields ``names``."""
    options = Event._meta
    quote = connection.ops.quote_name
    columns = [quote(str(options.get_field(name).column)) for name in names]  # type: ignore[union-attr]
    return [quote(options.db_table), *columns]


def _claim_insert_or_count(connection: BaseDatabaseWrapper, event: Event) -> Found:
    columns, values, values_params = _insert_parts(connection, event)
    table, pk, event_id, status, deliveries, received = quoted_columns(
        connection, "id", "event_id", "status", "deliveries", "last_received_at"
    )
    # Each part runs on the statement's one snapshot; the UPDATE and the INSERT never meet
    # one row (the INSERT needs no row stored, the UPDATE one).
    sql = (
        "WITH claim AS (SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS claimed, "  # noqa: S608
        f"EXISTS (SELECT 1 FROM {table} WHERE {event_id} = %s) AS stored), "
        f"counted AS (UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s "
        f"WHERE {pk} = (SELECT {pk} FROM {table} WHERE {event_id} = %s AND {status} = %s "
        f"FOR NO KEY UPDATE SKIP LOCKED) RETURNING {pk}), "
        f"inserted AS ({columns} SELECT {values} FROM claim "
        f"WHERE claimed AND NOT stored RETURNING {pk}) "
        "SELECT claimed, stored, (SELECT * FROM counted), (SELECT * FROM inserted) FROM claim"
    )
    key = event.event_id
    received_at = _db_value(connection, event.last_received_at)
    params: list[Any] = [ADVISORY_LOCK_CLASS, key, key, received_at, key, Status.PROCESSED.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *values_params])
        claimed, stored, counted, inserted = cursor.fetchone()
    if counted is not None:
        return Found.COUNTED
    if stored:
        return Found.STORED
    if not claimed:
        return Found.BUSY
    event.pk = inserted
    return Found.INSERTED


def _insert_unless_stored(connection: BaseDatabaseWrapper, event: Event) -> Found:
    columns, values, params = _insert_parts(connection, event)
    [_, pk, event_id] = quoted_columns(connection, "id", "event_id")
    # ON CONFLICT names the event id's unique index: a violation of any other constraint
    # still raises (INSERT OR IGNORE, Django's ignore_conflicts, would hide it).
    sql = f"{columns} VALUES ({values}) ON CONFLICT ({event_id}) DO NOTHING RETURNING {pk}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return Found.STORED
    event.pk = row[0]
    return Found.INSERTED


def _insert_parts(connection: BaseDatabaseWrapper, event: Event) -> tuple[str, str, list[Any]]:
    """``INSERT INTO table (columns)``, the values' placeholders and their parameters, as
    Django's ``InsertQuery`` compiles them for ``event`` (after sending ``pre_save``)."""
    signals.pre_save.send(
        sender=Event, instance=event, raw=False, using=connection.alias, update_fields=None
    )
    fields = [field for field in Event._meta.local_concrete_fields if not field.primary_key]
    query = InsertQuery(Event)
    query.insert_values(fields, [event])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    columns, _, values = sql.partition(" VALUES ")
    if not (values.startswith("(") and values.endswith(")")):  # pragma: no cover
        raise DatabaseError(f"Unexpected INSERT from Django's compiler: {sql}")
    return columns, values[1:-1], list(params)


def _db_value(connection: BaseDatabaseWrapper, moment: datetime) -> Any:
    return Event._meta.get_field("last_received_at").get_db_prep_value(moment, connection)
