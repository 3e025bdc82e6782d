"""A delivery's first write: insert a new event's row, or count a redelivery on the stored one.

* :func:`insert_or_count`: count a processed event's redelivery, or insert a new event's
  row; on PostgreSQL both in one statement, with a claim on the event id.
* :func:`count_processed_redelivery`: the UPDATE that counts a redelivery of a processed
  event.

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

from django_klarefi.locks import ADVISORY_LOCK_CLASS, attempt_settings_sql, claim_key
from django_klarefi.models import Event
from django_klarefi.transaction_state import ensure_committable

__all__ = [
    "Found",
    "SaveSignalFailed",
    "count_processed_redelivery",
    "has_save_receivers",
    "insert_or_count",
    "insert_row",
    "needs_transaction",
]

Status = Event.Status

# A compiled one-row INSERT: "INSERT INTO t (columns)", its placeholders, their values.
_InsertParts = tuple[str, str, list[Any]]


class SaveSignalFailed(Exception):
    """A receiver of ``pre_save`` or ``post_save`` on ``Event`` raised (``error``) while a
    new event's row was inserted: user code, failed like any receiver of the event's own
    signals."""

    def __init__(self, error: BaseException):
        super().__init__(repr(type(error)))
        self.error = error


class Found(enum.Enum):
    """What :func:`insert_or_count` found for a delivery's event id."""

    #: No row was stored (and, on PostgreSQL, the claim is taken): the row is inserted.
    INSERTED = "inserted"
    #: A processed row is stored: this delivery is counted on it.
    COUNTED = "counted"
    #: A processed row is stored, but another transaction holds its lock for a moment (a
    #: redelivery counting itself) or for long (a forced reprocess): try the count again.
    LOCKED = "locked"
    #: A row is stored that is not processed: lock it and run it (or see who runs it).
    STORED = "stored"
    #: PostgreSQL: no row is visible, and another transaction holds the claim on the id.
    BUSY = "busy"


def insert_or_count(using: str, event: Event, *, attempt: str | None = None) -> Found:
    """Count the delivery on ``event``'s stored row if it is processed, or insert the row.

    On PostgreSQL one statement, as an INSERT of an id whose row is uncommitted (a first
    delivery running its handlers) or being updated or deleted (a receiver saving its
    event, a prune batch) would wait on the unique index for as long as that transaction
    runs. The statement takes an advisory lock on the event id (the claim), held until
    this transaction ends (in autocommit, until the statement ends), and looks for a
    committed row, which a plain read never waits for; it counts the delivery on a
    processed row (skipping a locked one), and inserts the row only when the claim is
    taken and no row is stored. Elsewhere, an UPDATE that counts a processed row's
    delivery and says whether a row is stored (on SQLite, as the transaction's first
    statement, it takes the write lock), then, only when none is, the INSERT.

    ``attempt``: the token of the attempt whose transaction this is, set apart as
    :func:`~django_klarefi.locks.begin_attempt` does, in the same statement (PostgreSQL).

    ``pre_save`` and ``post_save`` are sent for an inserted row, and only for it, as
    ``save()`` sends them: with a ``pre_save`` receiver connected to ``Event`` (which may
    change the row), PostgreSQL's INSERT is a statement of its own, after the look. A
    receiver of either that raises is user code failing: :class:`SaveSignalFailed`, which
    the attempt records like a failure of the event's own receivers. Call it in a
    transaction when :func:`needs_transaction` says so. A row committed by another
    transaction after the look, and only then, raises ``IntegrityError`` from the unique
    index; so does any other constraint. An INSERT that stores no row (a trigger of the
    project's discarding it) raises ``DatabaseError``.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        parts = None if signals.pre_save.has_listeners(Event) else _insert_parts(connection, event)
        if parts is None:
            found = _claim_and_count(connection, event, attempt)
            if found is Found.INSERTED:
                _save_new(event, using)
            return found
        return _claim_insert_or_count(connection, event, parts, attempt)
    found = _count_or_find(connection, event)
    if found is Found.INSERTED:
        _save_new(event, using)
    return found


def has_save_receivers() -> bool:
    """Whether a ``pre_save`` or ``post_save`` receiver is connected to ``Event``: user code
    that runs with a new event's INSERT, and may write to its row."""
    return signals.pre_save.has_listeners(Event) or signals.post_save.has_listeners(Event)


def needs_transaction() -> bool:
    """Whether a caller in autocommit (task mode) must wrap :func:`insert_or_count` in a
    transaction of its own: when a ``pre_save`` receiver runs before an INSERT that may
    still fail (its writes must not outlive it, and, on PostgreSQL, the claim must cover
    that INSERT), or a ``post_save`` receiver after it (if it fails, the row must not be
    committed behind the error). Otherwise each of its statements stands alone: on SQLite
    the count, then the INSERT, each in autocommit (a race between them ends in the
    INSERT's ``IntegrityError``, and the delivery is counted then)."""
    return has_save_receivers()


def count_processed_redelivery(using: str, endpoint: str, event_id: str, now: datetime) -> bool:
    """Count a redelivery of a processed event with one UPDATE; whether there was one.

    A first attempt's row is not committed as processed, so the WHERE clause does not
    match it. On PostgreSQL the UPDATE skips a row another transaction has locked (a
    forced reprocess, a redelivery counting itself): it never waits. On SQLite it waits
    for the write lock, as every write does.
    """
    connection = connections[using]
    table, pk, event_id_column, endpoint_column, status, deliveries, received = quoted_columns(
        connection, "id", "event_id", "endpoint", "status", "deliveries", "last_received_at"
    )
    match = f"{event_id_column} = %s AND {endpoint_column} = %s AND {status} = %s"
    if connection.vendor == "postgresql":
        match = f"{pk} = (SELECT {pk} FROM {table} WHERE {match} FOR NO KEY UPDATE SKIP LOCKED)"  # noqa: S608
    sql = f"UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s WHERE {match}"  # noqa: S608
    with connection.cursor() as cursor:
        params = [_db_value(connection, now), event_id, endpoint, Status.PROCESSED.value]
        cursor.execute(sql, params)
        return bool(cursor.rowcount)


def _count_or_find(connection: BaseDatabaseWrapper, event: Event) -> Found:
    """Not PostgreSQL: count the delivery on a processed row, in one UPDATE that also says
    whether any row is stored (it touches a row that is not processed without changing
    it). INSERTED: none is (where UPDATE ... RETURNING is missing, none is processed), the
    caller inserts."""
    returning = connection.vendor == "sqlite" and connection.features.can_return_columns_from_insert
    if not returning:  # SQLite before 3.35, and other databases
        counted = count_processed_redelivery(
            connection.alias, event.endpoint, event.event_id, event.last_received_at
        )
        return Found.COUNTED if counted else Found.INSERTED
    table, event_id, endpoint, status, deliveries, received = quoted_columns(
        connection, "event_id", "endpoint", "status", "deliveries", "last_received_at"
    )
    processed = f"{status} = %s"
    sql = (
        f"UPDATE {table} SET {deliveries} = {deliveries} + (CASE WHEN {processed} THEN 1 "  # noqa: S608
        f"ELSE 0 END), {received} = (CASE WHEN {processed} THEN %s ELSE {received} END) "
        f"WHERE {event_id} = %s AND {endpoint} = %s RETURNING {status}"
    )
    received_at = _db_value(connection, event.last_received_at)
    value = Status.PROCESSED.value
    with connection.cursor() as cursor:
        cursor.execute(sql, [value, value, received_at, event.event_id, event.endpoint])
        row = cursor.fetchone()
    if row is None:
        return Found.INSERTED
    return Found.COUNTED if row[0] == Status.PROCESSED else Found.STORED


def _save_new(event: Event, using: str) -> None:
    """Insert ``event`` as ``save()`` would: ``pre_save``, the INSERT, ``post_save``."""
    _send_save_signal(signals.pre_save, event, using)
    insert_row(using, event)
    _send_save_signal(signals.post_save, event, using, created=True)


def insert_row(using: str, event: Event) -> None:
    """INSERT ``event``'s row and set its ``pk``, sending no model signal (the attempt's
    failure record is bookkeeping, not a save). ``DatabaseError`` if the INSERT stored no
    row (a trigger or rule of the project's discarded it)."""
    fields = [field for field in Event._meta.local_concrete_fields if not field.primary_key]
    query = InsertQuery(Event)
    query.insert_values(fields, [event])
    compiler = query.get_compiler(using=using)
    try:
        rows = compiler.execute_sql(Event._meta.db_returning_fields)
    except TypeError as exc:
        # Django reads the new row's id from the INSERT's RETURNING: no row, no id. Django
        # 5.2 then raises a TypeError from deep inside; say what happened, unless it was
        # not that.
        stored = Event.objects.using(using).filter(endpoint=event.endpoint, event_id=event.event_id)
        if stored.exists():
            raise
        raise _discarded(event) from exc
    if not rows or rows[0] is None or rows[0][0] is None:  # Django 6.x: no row, no id
        raise _discarded(event)
    event.pk = rows[0][0]
    event._state.adding, event._state.db = False, using


def _send_save_signal(signal: signals.ModelSignal, event: Event, using: str, **extra: Any) -> None:
    """Send ``signal`` for ``event``'s INSERT, as ``save()`` does: its receivers are user
    code, so whatever they raise (``SystemExit`` included) or leave broken (a database
    error caught without an atomic block of its own) is :class:`SaveSignalFailed`."""
    if not signal.has_listeners(Event):
        return
    try:
        signal.send(
            sender=Event, instance=event, raw=False, using=using, update_fields=None, **extra
        )
        ensure_committable(using)  # always in a transaction: see needs_transaction
    except BaseException as exc:
        raise SaveSignalFailed(exc) from exc


def _discarded(event: Event) -> DatabaseError:
    return DatabaseError(
        f"The INSERT of Klarefi event {event.event_id} stored no row (a trigger or rule on "
        "the events table discarded it)."
    )


def quoted_columns(connection: BaseDatabaseWrapper, *names: str) -> list[str]:
    """The quoted table name, then the quoted columns of the Event fields ``names``."""
    options = Event._meta
    quote = connection.ops.quote_name
    columns = [quote(str(options.get_field(name).column)) for name in names]  # type: ignore[union-attr]
    return [quote(options.db_table), *columns]


def _claim_insert_or_count(
    connection: BaseDatabaseWrapper, event: Event, parts: _InsertParts, attempt: str | None
) -> Found:
    columns, values, values_params = parts
    sql, params = _look_sql(connection, event, attempt)
    [pk] = quoted_columns(connection, "id")[1:]
    # Each part runs on the statement's one snapshot; the UPDATE and the INSERT never meet
    # one row (the INSERT needs no row stored, the UPDATE one).
    sql = (
        f"{sql}, inserted AS ({columns} SELECT {values} FROM claim "  # noqa: S608
        f"WHERE claimed AND stored IS NULL RETURNING {pk}) "
        "SELECT claimed, stored, (SELECT * FROM counted), (SELECT * FROM inserted) FROM claim"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *values_params])
        claimed, stored, counted, inserted = cursor.fetchone()
    found = _found(claimed, stored, counted)
    if found is Found.INSERTED:
        if inserted is None:
            # Claimed, nothing stored, yet no row: a trigger or rule of the project's
            # discarded the INSERT. Not an event to answer 200 for.
            raise _discarded(event)
        event.pk = inserted
        event._state.adding, event._state.db = False, connection.alias
        _send_save_signal(signals.post_save, event, connection.alias, created=True)
    return found


def _claim_and_count(connection: BaseDatabaseWrapper, event: Event, attempt: str | None) -> Found:
    """PostgreSQL: the claim, the look and the count, without the INSERT (INSERTED: the
    caller inserts, holding the claim)."""
    sql, params = _look_sql(connection, event, attempt)
    with connection.cursor() as cursor:
        sql += " SELECT claimed, stored, (SELECT * FROM counted) FROM claim"
        cursor.execute(sql, params)
        return _found(*cursor.fetchone())


def _look_sql(
    connection: BaseDatabaseWrapper, event: Event, attempt: str | None
) -> tuple[str, list[Any]]:
    """The ``WITH`` part of PostgreSQL's statement: ``claim`` (claimed, and the stored
    row's status or NULL) and ``counted`` (the id of a processed row it counted)."""
    table, pk, event_id, endpoint, status, deliveries, received = quoted_columns(
        connection, "id", "event_id", "endpoint", "status", "deliveries", "last_received_at"
    )
    # An attempt's transaction: set it apart, and bound its idle time (locks.py).
    bound, bound_params = ("", []) if attempt is None else attempt_settings_sql(attempt)
    sql = (
        "WITH claim AS (SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS claimed, "  # noqa: S608
        f"(SELECT {status} FROM {table} WHERE {event_id} = %s AND {endpoint} = %s) "
        f"AS stored{bound}), "
        f"counted AS (UPDATE {table} SET {deliveries} = {deliveries} + 1, {received} = %s "
        f"WHERE {pk} = (SELECT {pk} FROM {table} WHERE {event_id} = %s AND {endpoint} = %s "
        f"AND {status} = %s FOR NO KEY UPDATE SKIP LOCKED) RETURNING {pk})"
    )
    key, name = event.event_id, event.endpoint
    received_at = _db_value(connection, event.last_received_at)
    params = [ADVISORY_LOCK_CLASS, claim_key(name, key), key, name, *bound_params]
    return sql, [*params, received_at, key, name, Status.PROCESSED.value]


def _found(claimed: bool, stored: str | None, counted: int | None) -> Found:
    if counted is not None:
        return Found.COUNTED
    if stored == Status.PROCESSED:
        return Found.LOCKED
    if stored is not None:
        return Found.STORED
    return Found.INSERTED if claimed else Found.BUSY


def _insert_parts(connection: BaseDatabaseWrapper, event: Event) -> _InsertParts | None:
    """``INSERT INTO table (columns)``, the values' placeholders and their parameters, as
    Django's ``InsertQuery`` compiles them for ``event``; None if the SQL is not of the
    one-row ``... VALUES (...)`` shape this module builds on (then the INSERT is a
    statement of its own)."""
    fields = [field for field in Event._meta.local_concrete_fields if not field.primary_key]
    query = InsertQuery(Event)
    query.insert_values(fields, [event])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    columns, _, values = sql.partition(" VALUES ")
    if not (columns.startswith("INSERT INTO ") and values[:1] == "(" and values[-1:] == ")"):
        return None
    return columns, values[1:-1], list(params)


def _db_value(connection: BaseDatabaseWrapper, moment: datetime) -> Any:
    return Event._meta.get_field("last_received_at").get_db_prep_value(moment, connection)
