"""One attempt at an event's handlers: the one place where handlers run.

:func:`run_attempt` opens the attempt in a transaction (a first delivery's INSERT, or a
stored event's lock), decides its bookkeeping in an
:class:`~django_klarefi.records.AttemptRecord`, sends the event's signals, writes the
record, and commits. It returns what it found: a :class:`~django_klarefi.outcomes.Result`,
or, for a first delivery that found its event id stored, what
:func:`~django_klarefi.storing.insert_or_count` found. ``processing`` decides what follows.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from django_klarefi import metrics
from django_klarefi.conf import conf
from django_klarefi.failures import report_recorded_failure
from django_klarefi.locks import Lock, begin_attempt, lock_event
from django_klarefi.log_fields import endpoint_of, event_extra, log_extra
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome, Result
from django_klarefi.payloads import event_fields
from django_klarefi.personal_data import erased_values
from django_klarefi.records import (
    AttemptRecord,
    error_text,
    safe_text,
    write_failure,
    write_success,
)
from django_klarefi.signals import EVENT_SIGNALS, event_received
from django_klarefi.signature import parse_payload
from django_klarefi.storing import Found, SaveSignalFailed, insert_or_count

__all__ = [
    "Conflict",
    "FirstDelivery",
    "StoredEvent",
    "enqueue_event",
    "fail_first_delivery",
    "run_attempt",
    "send_event_signals",
]

logger = logging.getLogger("django_klarefi")

Status = Event.Status

#: Enqueues an event's processing; called after the event's row commits.
Enqueue = Callable[[Event], None]


@dataclass(frozen=True)
class FirstDelivery:
    """A verified delivery to insert as a new event: its columns (``fields``, from
    :func:`~django_klarefi.payloads.event_fields`), its body, and when it arrived."""

    fields: dict[str, Any]
    raw_body: bytes
    signed_at: int
    delivered_at: datetime

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])

    @property
    def endpoint(self) -> str:
        return str(self.fields["endpoint"])

    def new_event(self) -> Event:
        """The unsaved row, before any attempt: pending, one delivery."""
        at = self.delivered_at
        return Event(**self.fields, deliveries=1, received_at=at, last_received_at=at)

    def pristine_event(self) -> Event:
        """:meth:`new_event` built again from the body, for a failure record: nothing a
        receiver did to its object, or to the payload it shares, is stored."""
        fields = event_fields(parse_payload(self.raw_body), self.raw_body, self.signed_at)
        return replace(self, fields={**fields, "endpoint": self.endpoint}).new_event()


@dataclass(frozen=True)
class StoredEvent:
    """Lock a stored event and run its handlers (or queue them, with ``enqueue``).

    ``delivered_at``: the time of a redelivery to count on it. ``force``: run a processed
    event again (a reprocess; never for a delivery). An event whose personal data was
    erased is never run again, forced or not: ``ERASED``.
    """

    endpoint: str
    event_id: str
    delivered_at: datetime | None = None
    force: bool = False
    enqueue: Enqueue | None = None


@dataclass(frozen=True)
class Conflict:
    """A first delivery's INSERT hit a unique constraint: the event id was stored by
    another transaction after the look, or another constraint of the project's refused
    the row (``error``)."""

    error: IntegrityError


@dataclass(frozen=True)
class _Opened:
    """An attempt under way: the object the receivers get, its record, and (for a
    stored event) the row as it was locked, for a failure record should it vanish."""

    event: Event
    record: AttemptRecord
    stored: Event | None


def send_event_signals(event: Event) -> None:
    """Send the event's per-type signal (if its type is documented), then ``event_received``.

    Exceptions propagate: they are what marks the event failed.
    """
    signal = EVENT_SIGNALS.get(event.event_type)
    if signal is not None:
        signal.send(sender=Event, event=event)
    event_received.send(sender=Event, event=event)


def run_attempt(using: str, start: FirstDelivery | StoredEvent) -> Result | Found | Conflict:
    """Run one attempt at an event's handlers in one transaction, and record its outcome.

    In the transaction: the attempt opens (``_open``), the receivers run, the record is
    written (``write_success``), COMMIT. Whatever raises once the attempt is open (a
    receiver, of the event's signals or of ``Event``'s save signals, a query, the COMMIT
    itself) rolls all of it back, and the failure is recorded in a transaction of its own
    (``write_failure``), with a traceback that any column can store. ``SystemExit`` and
    ``KeyboardInterrupt`` from a receiver are recorded the same way, then raised again:
    the process stops as asked, and the event is stored, failed, to run again. An
    exception from an ``on_commit`` callback, after a successful COMMIT, is logged and
    changes nothing.
    """
    committed = at_commit = False
    began = 0.0
    opened: _Opened | None = None
    ended: Result | Found | Conflict | None = None
    statements = _StatementCount()

    def mark_committed() -> None:
        nonlocal committed
        committed = True

    try:
        with transaction.atomic(using=using):
            # First in the transaction's on_commit list: it runs, before any callback a
            # handler registers, only once the COMMIT has succeeded.
            transaction.on_commit(mark_committed, using=using)
            begun = _open(using, start)
            if isinstance(begun, _Opened):
                opened = begun
                began = time.perf_counter()
                with connections[using].execute_wrapper(statements):
                    send_event_signals(opened.event)
                _ensure_committable(using)
                record = opened.record
                # A first delivery's INSERT wrote the record already. Unless a receiver
                # used the connection (it may have changed the row), or the payload is to
                # be erased, that is all: no UPDATE to repeat it.
                if statements.count or not record.inserted or record.erasure:
                    write_success(using, record)
                at_commit = True
            else:
                ended = begun
    except BaseException as exc:
        if committed:
            # The COMMIT succeeded; a callback registered with on_commit raised after it.
            return _after_commit(using, start, opened, ended, exc)
        if isinstance(exc, SaveSignalFailed):
            return _failed(using, start, _first_opened(start), exc.error, at_commit=False)
        if opened is None:
            if isinstance(exc, IntegrityError) and isinstance(start, FirstDelivery):
                return Conflict(exc)  # the event id stored meanwhile, or another constraint
            raise  # our own statements failed (the database is unavailable): nothing written
        return _failed(using, start, opened, exc, at_commit=at_commit)
    if opened is not None:
        record = opened.record
        metrics.observe_processing(record.endpoint, record.event_type, time.perf_counter() - began)
        return Result(Outcome.PROCESSED, record.event_id, record.attempt)
    assert ended is not None
    return ended


def _open(using: str, start: FirstDelivery | StoredEvent) -> _Opened | Result | Found:
    """Open the attempt: what the receivers get and what will be recorded; or what ends
    the attempt before any receiver runs."""
    started_at, token = timezone.now(), uuid.uuid4().hex
    if isinstance(start, FirstDelivery):
        # The INSERT writes the row as this attempt records it if every receiver succeeds
        # (rolled back with them otherwise): its record, decided now.
        event = start.new_event()
        record = AttemptRecord(
            pk=None,
            event_id=event.event_id,
            event_type=event.event_type,
            endpoint=endpoint_of(event),
            attempt=1,
            started_at=started_at,
            deliveries=event.deliveries,
            last_received_at=event.last_received_at,
            delivered=True,
            inserted=True,
            token=token,
            erasure=_erasure(event.payload, started_at),
        )
        found = insert_or_count(using, _as_recorded(event, record), attempt=token)
        if found is not Found.INSERTED:
            return found
        return _Opened(event, replace(record, pk=event.pk), stored=None)

    begin_attempt(using, token)
    row = lock_event(using, start.endpoint, start.event_id)
    if row is Lock.MISSING:
        return Result(Outcome.MISSING, start.event_id)
    if row is Lock.BUSY:
        return Result(Outcome.IN_FLIGHT, start.event_id)
    delivered_at = start.delivered_at
    deliveries = row.deliveries + 1 if delivered_at is not None else row.deliveries
    erased = row.payload_erased_at is not None
    done = erased or (row.status == Status.PROCESSED and not start.force)
    if done or start.enqueue is not None:
        if delivered_at is not None:
            Event.objects.using(using).filter(pk=row.pk).update(
                deliveries=deliveries, last_received_at=delivered_at
            )
        if erased:
            return Result(Outcome.ERASED, start.event_id)
        if done:
            return Result(Outcome.ALREADY_PROCESSED, start.event_id)
        enqueue = start.enqueue
        transaction.on_commit(lambda: enqueue_event(enqueue, row), using=using)
        return Result(Outcome.QUEUED, start.event_id)
    record = AttemptRecord(
        pk=row.pk,
        event_id=row.event_id,
        event_type=row.event_type,
        endpoint=endpoint_of(row),
        attempt=row.attempts + 1,
        started_at=started_at,
        deliveries=deliveries,
        last_received_at=delivered_at or row.last_received_at,
        delivered=delivered_at is not None,
        inserted=False,
        token=token,
        erasure=_erasure(row.payload, started_at),
    )
    return _Opened(_as_recorded(_detached(row), record), record, stored=row)


class _StatementCount:
    """An execute wrapper that counts the statements run on its connection."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def _erasure(payload: Any, now: datetime) -> dict[str, Any]:
    """What a success also writes under ``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``: the
    payload's data erased in the same UPDATE, from the payload as stored, before any
    receiver could change it."""
    if timedelta(0) != conf.PAYLOAD_RETENTION:
        return {}
    return erased_values(payload, now)


def _as_recorded(event: Event, record: AttemptRecord) -> Event:
    """Show the receivers ``event`` as the attempt will record it if they all succeed."""
    for name, value in record.success_values().items():
        setattr(event, name, value)
    return event


def _detached(row: Event) -> Event:
    """A copy of the locked row for the receivers, with a payload of its own: the locked
    row stays as stored, for a failure record should the row vanish meanwhile."""
    copy = Event(**{field.attname: getattr(row, field.attname) for field in Event._meta.fields})
    copy.payload = json.loads(json.dumps(row.payload))
    copy._state.adding, copy._state.db = False, row._state.db
    return copy


def _first_opened(start: FirstDelivery | StoredEvent) -> _Opened:
    """The attempt of a first delivery whose save signal failed: its record, to insert
    the event as failed."""
    assert isinstance(start, FirstDelivery)
    event = start.pristine_event()
    record = AttemptRecord(
        pk=None,
        event_id=event.event_id,
        event_type=event.event_type,
        endpoint=endpoint_of(event),
        attempt=1,
        started_at=timezone.now(),
        deliveries=event.deliveries,
        last_received_at=event.last_received_at,
        delivered=True,
        inserted=True,
        token="",
    )
    return _Opened(event, record, stored=None)


def fail_first_delivery(using: str, start: FirstDelivery, error: Exception) -> Result:
    """Record a first delivery whose INSERT's save signal failed (task mode's INSERT,
    outside any attempt): the event is stored as failed, with the traceback."""
    return _failed(using, start, _first_opened(start), error, at_commit=False)


def _failed(
    using: str,
    start: FirstDelivery | StoredEvent,
    opened: _Opened | None,
    exc: BaseException,
    *,
    at_commit: bool,
) -> Result:
    """Record a failed attempt, then raise again an exception that asks the process to
    stop (``SystemExit``, ``KeyboardInterrupt``): the failure is stored first."""
    if opened is None:
        raise exc
    record = opened.record
    # The class only: the exception's text can quote payload values (personal data),
    # and the traceback, in full, is stored on the event.
    logger.error(
        "Processing Klarefi event %s (%s) failed with %s; the failure is recorded on the "
        "event, to be run again.",
        safe_text(record.event_id),
        safe_text(record.event_type),
        safe_text(type(exc).__qualname__),
        extra=_log_extra(record, outcome=Outcome.FAILED),
    )
    new_row = start.pristine_event() if isinstance(start, FirstDelivery) else opened.stored
    try:
        result = write_failure(using, record, new_row, error_text(exc), at_commit=at_commit)
    except BaseException as failure:
        # Whoever logs this (the view) must not print the receiver's exception as its
        # context: its text may quote payload values, or be unprintable.
        failure.__suppress_context__ = True
        logger.error(
            "Klarefi event %s: its failure could not be recorded (%s); the delivery is "
            "answered with an error, so Klarefi retries it.",
            safe_text(record.event_id),
            safe_text(type(failure).__qualname__),
            extra=_log_extra(record, outcome=Outcome.FAILED),
        )
        raise
    if result.outcome is Outcome.FAILED and result.attempt is not None:
        # Recorded, outside the rolled-back transaction: event_failed, the metric. (A
        # failure left to another attempt is reported by that one.)
        report_recorded_failure(using, record.event_id, exc)
    if not isinstance(exc, Exception):
        raise exc
    return result


def _log_extra(record: AttemptRecord, **facts: Any) -> dict[str, Any]:
    return log_extra(
        event_id=safe_text(record.event_id),
        event_type=safe_text(record.event_type),
        endpoint=record.endpoint,
        attempt=record.attempt,
        **facts,
    )


def _after_commit(
    using: str,
    start: FirstDelivery | StoredEvent,
    opened: _Opened | None,
    ended: Result | Found | Conflict | None,
    exc: BaseException,
) -> Result | Found | Conflict:
    if opened is not None:
        result: Result | Found | Conflict = Result(
            Outcome.PROCESSED, opened.record.event_id, opened.record.attempt
        )
    else:
        assert ended is not None
        result = ended
    if isinstance(exc, EnqueueFailed) and isinstance(result, Result):
        return Result(Outcome.NOT_QUEUED, result.event_id)
    if not isinstance(exc, Exception):
        raise exc
    # With its traceback: it is stored nowhere else (the event is processed).
    logger.error(
        "An on_commit callback raised %s after Klarefi event %s was committed; the event "
        "is not processed again for it.",
        safe_text(type(exc).__qualname__),
        safe_text(start.event_id),
        exc_info=exc,
        extra=log_extra(event_id=safe_text(start.event_id)),
    )
    return result


def _ensure_committable(using: str) -> None:
    """Raise if the receivers left the transaction unable to commit, or ended it.

    A receiver that catches a database error without an atomic block of its own, or calls
    ``transaction.set_rollback(True)``, leaves a transaction that Django would roll back
    without a word at the end of the block (and on PostgreSQL a statement that failed
    aborts the transaction even when the error was caught). A receiver that runs a raw
    ``COMMIT`` or ``ROLLBACK`` ends the attempt's transaction: what follows would run
    outside it, with no lock. Either way the event would be answered as processed with
    its record lost or unguarded; this makes it a failure instead.
    """
    connection = connections[using]
    if connection.needs_rollback or _database_transaction_state(connection) != "open":
        raise TransactionManagementError(
            "A receiver caught a database error, marked the transaction for rollback "
            "(transaction.set_rollback), or ended it (a raw COMMIT or ROLLBACK), so the "
            "event's writes cannot be committed with it. Put a statement that may fail in "
            "a transaction.atomic() block of its own, and leave COMMIT to the attempt."
        )


def _database_transaction_state(connection: Any) -> str:
    """``"open"``, ``"failed"`` or ``"none"``, as the database driver sees it."""
    raw = connection.connection
    if connection.vendor == "sqlite":
        return "open" if raw.in_transaction else "none"
    info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has get_transaction_status()
    status = getattr(info, "transaction_status", None)
    if status is None and hasattr(raw, "get_transaction_status"):
        status = raw.get_transaction_status()
    # psycopg 3 and psycopg2 alike: 0 idle (no transaction), 3 in a failed transaction.
    return {0: "none", 3: "failed"}.get(status, "open") if status is not None else "open"


def enqueue_event(enqueue: Enqueue | None, event: Event) -> None:
    """Call ``enqueue(event)`` after its row committed; :class:`EnqueueFailed`, logged,
    when the task backend refuses it (the event stays pending)."""
    assert enqueue is not None
    try:
        enqueue(event)
    except Exception as exc:
        logger.error(
            "Could not enqueue Klarefi event %s (%s): %s; it stays pending.",
            safe_text(event.event_id),
            safe_text(event.event_type),
            safe_text(type(exc).__qualname__),
            extra=event_extra(event, outcome=Outcome.NOT_QUEUED),
        )
        raise EnqueueFailed(safe_text(type(exc).__qualname__)) from exc
