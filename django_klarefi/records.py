"""An attempt's bookkeeping: the record it keeps of itself, and the two ways it is written.

An attempt decides its bookkeeping (status, error, attempts, deliveries, timestamps)
before any receiver runs, in an :class:`AttemptRecord` of its own, and writes it with
explicit values: :func:`write_success` in the attempt's transaction, after the receivers;
:func:`write_failure` in a transaction of its own, after the rollback. Neither reads the
``Event`` object the receivers were given, nor sends a model signal: whatever a receiver
does to its event (``refresh_from_db()``, ``save()``, a queryset ``update()``) cannot
change what the attempt records. See docs/how-it-works.md, "What a receiver may do to its
event".
"""

from __future__ import annotations

import functools
import logging
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Field

from django_klarefi.conf import conf
from django_klarefi.locks import Lock, claim, in_attempt_sql, lock_event
from django_klarefi.models import Event
from django_klarefi.outcomes import Outcome, Result
from django_klarefi.personal_data import erased_values, error_class
from django_klarefi.storing import insert_row, quoted_columns

__all__ = [
    "MAX_ERROR_CHARS",
    "AttemptRecord",
    "EventChanged",
    "error_text",
    "safe_text",
    "write_failure",
    "write_success",
]

logger = logging.getLogger("django_klarefi")

Status = Event.Status

#: A stored traceback longer than this keeps its start and its end (where the exception
#: is), with a note of how much was cut between them.
MAX_ERROR_CHARS = 64 * 1024


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt writes on its event's row, decided before any receiver runs."""

    #: The row's primary key, or None when this attempt's INSERT has not happened yet.
    pk: int | None
    event_id: str
    event_type: str
    #: The endpoint the event came in on.
    endpoint: str
    #: This attempt's number: the row's ``attempts`` once it is recorded.
    attempt: int
    #: When this attempt started: ``processed_at`` if it succeeds. It also tells this
    #: attempt's committed success from any other's (see :func:`write_failure`).
    started_at: datetime
    #: The row's ``deliveries`` once this attempt is recorded.
    deliveries: int
    last_received_at: datetime
    #: Whether this attempt counts a delivery (a first delivery or a redelivery), which a
    #: failure record must count too.
    delivered: bool
    #: Whether the row was inserted by this attempt (a first delivery).
    inserted: bool
    #: The token that sets this attempt's transaction apart (locks.begin_attempt).
    token: str
    #: The columns a success also writes to erase the payload's data
    #: (``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``), decided before the receivers run
    #: (:func:`django_klarefi.personal_data.erased_values`); empty otherwise.
    erasure: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def first(cls, event: Event, started_at: datetime, token: str) -> AttemptRecord:
        """The record of a first delivery's attempt at ``event`` (unsaved: ``pk`` None)."""
        return cls(
            pk=event.pk,
            event_id=event.event_id,
            event_type=event.event_type,
            endpoint=event.endpoint,
            attempt=1,
            started_at=started_at,
            deliveries=1,
            last_received_at=event.last_received_at,
            delivered=True,
            inserted=True,
            token=token,
            erasure=_erasure(event.payload, started_at),
        )

    @classmethod
    def next(
        cls, row: Event, started_at: datetime, token: str, delivered_at: datetime | None
    ) -> AttemptRecord:
        """The record of the next attempt at the stored, locked ``row``, counting a
        redelivery delivered at ``delivered_at`` if there is one."""
        return cls(
            pk=row.pk,
            event_id=row.event_id,
            event_type=row.event_type,
            endpoint=row.endpoint,
            attempt=row.attempts + 1,
            started_at=started_at,
            deliveries=row.deliveries + (delivered_at is not None),
            last_received_at=delivered_at or row.last_received_at,
            delivered=delivered_at is not None,
            inserted=False,
            token=token,
            erasure=_erasure(row.payload, started_at),
        )

    def success_values(self) -> dict[str, Any]:
        return {
            "status": Status.PROCESSED,
            "error": "",
            "attempts": self.attempt,
            "processed_at": self.started_at,
            "deliveries": self.deliveries,
            "last_received_at": self.last_received_at,
        }


class EventChanged(Exception):
    """The attempt's success could not be written: its row is gone, or no longer has its
    event id, or the attempt's transaction has ended (a receiver's raw COMMIT)."""

    def __init__(self, event_id: str):
        super().__init__(
            f"A receiver deleted Klarefi event {safe_text(event_id)!s}, changed its "
            "event_id, or ended the attempt's transaction (a raw COMMIT or ROLLBACK): the "
            "attempt cannot be recorded, so it is rolled back. Receivers may not delete "
            "their event or change its id, and leave COMMIT to the attempt."
        )


def _erasure(payload: Any, now: datetime) -> dict[str, Any]:
    """What a success also writes under ``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``: the
    payload's data erased in the same UPDATE, from the payload as stored, before any
    receiver could change it."""
    if timedelta(0) != conf.PAYLOAD_RETENTION:
        return {}
    return erased_values(payload, now)


def write_success(using: str, record: AttemptRecord, *, erase: bool = True) -> None:
    """Record a successful attempt on its row, in the attempt's transaction, with the
    record's values (and its erasure, unless ``erase`` is false: written before the
    receivers run, the row keeps their data); ``EventChanged`` if the row is gone, has
    another event id or endpoint, or the attempt's transaction has ended.

    One UPDATE by primary key, its SQL built once per database and set of columns (the
    ORM's ``update()`` would cost more CPU than the statement itself, on every delivery).
    """
    assert record.pk is not None
    connection = connections[using]
    values = {**record.success_values(), **(record.erasure if erase else {})}
    columns = tuple(values)
    condition, condition_params = in_attempt_sql(using, record.token)
    sql = _success_sql(connection.alias, connection.vendor, columns, condition)
    fields = _concrete_fields()
    params = [fields[name].get_db_prep_save(value, connection) for name, value in values.items()]
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [*params, record.pk, record.event_id, record.endpoint, *condition_params]
        )
        updated = cursor.rowcount
    if updated != 1:
        raise EventChanged(record.event_id)


@functools.cache
def _concrete_fields() -> dict[str, Field[Any, Any]]:
    return {field.name: field for field in Event._meta.concrete_fields}


@functools.cache
def _success_sql(alias: str, vendor: str, columns: tuple[str, ...], condition: str) -> str:
    connection = connections[alias]
    table, *quoted = quoted_columns(connection, *columns, "id", "event_id", "endpoint")
    assignments = ", ".join(f"{column} = %s" for column in quoted[: len(columns)])
    pk, event_id, endpoint = quoted[len(columns) :]
    guard = f" AND {condition}" if condition else ""
    return (
        f"UPDATE {table} SET {assignments} "  # noqa: S608 - quoted names; values are parameters
        f"WHERE {pk} = %s AND {event_id} = %s AND {endpoint} = %s{guard}"
    )


def write_failure(
    using: str, record: AttemptRecord, new_row: Event | None, error: str, *, at_commit: bool
) -> Result:
    """Record a failed attempt in a transaction of its own, after its rollback.

    ``new_row`` is the row to insert, as failed, when none is stored: a first delivery's
    event, built from the delivery again, never the object its receivers had. On a stored
    row, this attempt (and, if it was one, its delivery) is counted, and the row is marked
    failed with ``error``, unless:

    * the row already carries this very attempt (its number and its start). Failed
      ``at_commit``: the COMMIT reached the database, and only its reply was lost; the
      outcome is ``PROCESSED``, and nothing is counted twice. Failed before: a receiver's
      raw ``COMMIT`` committed the attempt's own writes early; the row is marked failed,
      and not counted again;
    * another attempt, one that began after this one, has succeeded meanwhile: the row
      stays processed, and only the counts change;
    * another attempt is running on the row now, or (PostgreSQL) another delivery holds
      the event id's claim: it records its own outcome, and this one is left unrecorded
      (a WARNING says so).

    Raises ``DatabaseError`` when the database cannot be written.
    """
    for _ in range(2):
        with transaction.atomic(using=using):
            row = lock_event(using, record.endpoint, record.event_id)
            if row is Lock.BUSY:
                _leave_to_other(record.event_id, "another attempt at it is running")
                return Result(Outcome.FAILED, record.event_id)
            if row is not Lock.MISSING:
                return _fail_stored_row(using, record, row, error, at_commit=at_commit)
        if new_row is None:
            return Result(Outcome.MISSING, record.event_id)
        if _insert_failed(using, record, new_row, error):
            return Result(Outcome.FAILED, record.event_id, record.attempt, error)
        if not _claim_free(using, record.endpoint, record.event_id):
            return Result(Outcome.FAILED, record.event_id)
        # Stored meanwhile by a concurrent delivery: count this attempt on that row.
    _leave_to_other(record.event_id, "its row was stored and gone again each time")
    return Result(Outcome.FAILED, record.event_id)


def _fail_stored_row(
    using: str, record: AttemptRecord, row: Event, error: str, *, at_commit: bool
) -> Result:
    # The attempt's number and its start (to the microsecond) tell its own writes from any
    # other attempt's; the row's id alone would not (SQLite gives a rolled-back row's id to
    # the next INSERT).
    carries_this_attempt = row.attempts == record.attempt and row.processed_at == record.started_at
    if carries_this_attempt and at_commit and row.status == Status.PROCESSED:
        logger.warning(
            "Klarefi event %s: the COMMIT of its processing succeeded, but its reply was "
            "lost; it is recorded as processed.",
            safe_text(record.event_id),
        )
        return Result(Outcome.PROCESSED, record.event_id, record.attempt)
    values: dict[str, Any] = {}
    if not carries_this_attempt:
        values["attempts"] = row.attempts + 1
        if record.delivered:
            values["deliveries"] = row.deliveries + 1
            values["last_received_at"] = record.last_received_at
    attempts = values.get("attempts", row.attempts)
    if carries_this_attempt:
        values["processed_at"] = None  # a first delivery's own row, committed early
    if carries_this_attempt or row.status != Status.PROCESSED or row.attempts < record.attempt:
        # An event erased meanwhile keeps no traceback (it may quote the data): its class.
        kept = error_class(error) if row.payload_erased_at is not None else error
        values.update(status=Status.FAILED, error=kept)
    Event.objects.using(using).filter(pk=row.pk).update(**values)
    return Result(Outcome.FAILED, record.event_id, attempts, error)


def _insert_failed(using: str, record: AttemptRecord, new_row: Event, error: str) -> bool:
    """INSERT ``new_row`` as failed (no model signals: it is bookkeeping, not a save);
    False when the event id is stored or claimed meanwhile."""
    new_row.status, new_row.error, new_row.attempts = Status.FAILED, error, record.attempt
    new_row.deliveries, new_row.last_received_at = record.deliveries, record.last_received_at
    new_row.processed_at = None
    try:
        with transaction.atomic(using=using):
            if not claim(using, record.endpoint, record.event_id):
                return False
            insert_row(using, new_row)
    except IntegrityError:
        return False
    return True


def _claim_free(using: str, endpoint: str, event_id: str) -> bool:
    """Whether no other delivery holds the event id's claim (PostgreSQL); it then has
    inserted the row, uncommitted, and records its own outcome."""
    with transaction.atomic(using=using):
        if claim(using, endpoint, event_id):
            return True
    _leave_to_other(event_id, "another delivery of it is being processed")
    return False


def _leave_to_other(event_id: str, why: str) -> None:
    logger.warning(
        "Klarefi event %s: its failure is not recorded, as %s; that one records its own outcome.",
        safe_text(event_id),
        why,
    )


def error_text(exc: BaseException) -> str:
    """``exc``'s traceback as text that any database column can store, whatever the
    exception: its text may hold lone surrogates or U+0000, be of any size, or fail to
    format at all (a ``__str__`` that raises)."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:  # a broken exception (its __str__ raises) must not lose its event
        text = f"{_class_name(exc)} (its traceback could not be formatted)\n"
    text = safe_text(text)
    if len(text) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        cut = len(text) - 2 * half
        text = f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"
    return text


def safe_text(text: str) -> str:
    """``text`` with what no column or log stream can take made visible: lone surrogates
    as ``\\udcxx`` escapes, U+0000 as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def _class_name(exc: BaseException) -> str:
    cls = type(exc)
    return safe_text(f"{cls.__module__}.{cls.__qualname__}")
