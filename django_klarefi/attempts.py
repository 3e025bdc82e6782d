"""One attempt at an event's handlers: the one place where handlers run.

:func:`run_attempt` opens the attempt in a transaction (a first delivery's INSERT, or a
stored event's lock), decides its bookkeeping in an
:class:`~django_klarefi.records.AttemptRecord` and writes it, sends the event's signals,
writes the record again if the receivers may have changed the row, and commits. It returns
what it found: a :class:`~django_klarefi.outcomes.Result`, or, for a first delivery that
found its event id stored, what :func:`~django_klarefi.storing.insert_or_count` found.
``processing`` decides what follows.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from django_klarefi import metrics
from django_klarefi.failures import report_recorded_failure
from django_klarefi.locks import Lock, begin_attempt, lock_event
from django_klarefi.log_fields import log_extra
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome, Result
from django_klarefi.personal_data import redacted_traceback
from django_klarefi.records import (
    AttemptRecord,
    error_text,
    safe_text,
    write_failure,
    write_success,
)
from django_klarefi.signals import EVENT_SIGNALS, event_received
from django_klarefi.starts import Conflict, FirstDelivery, StoredEvent, enqueue_event
from django_klarefi.storing import Found, SaveSignalFailed, has_save_receivers, insert_or_count
from django_klarefi.transaction_state import ensure_committable

__all__ = ["fail_first_delivery", "run_attempt", "send_event_signals"]

logger = logging.getLogger("django_klarefi")

Status = Event.Status


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

    In the transaction: the attempt opens (``_open``: the row is inserted or locked, and
    written with the attempt's record), the receivers run, the record is written again if
    they may have changed the row, COMMIT. Whatever raises once the attempt is open (a
    receiver, of the event's signals or of ``Event``'s save signals, a query, the COMMIT
    itself) rolls all of it back, and the failure is recorded in a transaction of its own
    (``write_failure``), with a traceback that any column can store. An exception that is
    not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, ``CancelledError``) is
    recorded the same way, then raised again: the process stops as asked, and the event
    is stored, failed, to run again. An exception from an ``on_commit`` callback, after a
    successful COMMIT, is logged and changes nothing.
    """
    committed = at_commit = False
    began = 0.0
    opened: _Opened | None = None
    ended: Result | Found | Conflict | None = None
    statements = _StatementCount()
    # Inside a transaction already (a receiver that runs another event, a caller's own
    # atomic block): that transaction is the outer attempt's, or the caller's, to set apart.
    token = "" if connections[using].in_atomic_block else uuid.uuid4().hex

    def mark_committed() -> None:
        nonlocal committed
        committed = True

    try:
        with transaction.atomic(using=using):
            # First in the transaction's on_commit list: it runs, before any callback a
            # handler registers, only once the COMMIT has succeeded.
            transaction.on_commit(mark_committed, using=using)
            begun = _open(using, start, token)
            if isinstance(begun, _Opened):
                opened, record = begun, begun.record
                began = time.perf_counter()
                with connections[using].execute_wrapper(statements):
                    send_event_signals(opened.event)
                ensure_committable(using)
                # The row holds the record already. Write it again if a receiver ran a
                # statement on the connection (it may have changed the row), or a save
                # signal's receiver could have, or the payload is to be erased now.
                touched = statements.count or (record.inserted and has_save_receivers())
                if touched or record.erasure:
                    write_success(using, record)
                at_commit = True
            else:
                ended = begun
    except BaseException as exc:
        if committed:
            # The COMMIT succeeded; a callback registered with on_commit raised after it.
            return _after_commit(start, opened, ended, exc)
        if isinstance(exc, SaveSignalFailed):
            assert isinstance(start, FirstDelivery)
            return fail_first_delivery(using, start, exc.error)
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


def _open(using: str, start: FirstDelivery | StoredEvent, token: str) -> _Opened | Result | Found:
    """Open the attempt: its record, decided now and already written to the row (rolled
    back with the receivers' writes if they fail), and what the receivers get; or what
    ends the attempt before any receiver runs. ``token`` sets the attempt's transaction
    apart (:func:`~django_klarefi.locks.begin_attempt`); "" for an attempt nested in
    another transaction."""
    started_at = timezone.now()
    if isinstance(start, FirstDelivery):
        event = start.new_event()
        record = AttemptRecord.first(event, started_at, token)
        found = insert_or_count(using, _as_recorded(event, record), attempt=token or None)
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
    erased = row.payload_erased_at is not None
    done = erased or (row.status == Status.PROCESSED and not start.force)
    if done or start.enqueue is not None:
        if delivered_at is not None:
            Event.objects.using(using).filter(pk=row.pk).update(
                deliveries=row.deliveries + 1, last_received_at=delivered_at
            )
        if erased:
            return Result(Outcome.ERASED, start.event_id)
        if done:
            return Result(Outcome.ALREADY_PROCESSED, start.event_id)
        enqueue = start.enqueue
        transaction.on_commit(lambda: enqueue_event(enqueue, row), using=using)
        return Result(Outcome.QUEUED, start.event_id)
    record = AttemptRecord.next(row, started_at, token, delivered_at)
    # Before the receivers, as a first delivery's INSERT does: whatever they read of the
    # row (a refresh, a query) shows this attempt's record, never the state before it.
    write_success(using, record, erase=False)
    return _Opened(_as_recorded(_detached(row), record), record, stored=row)


class _StatementCount:
    """An execute wrapper that counts the statements run on its connection."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def _as_recorded(event: Event, record: AttemptRecord) -> Event:
    """Show ``event`` as the attempt records it if every receiver succeeds."""
    for name, value in record.success_values().items():
        setattr(event, name, value)
    return event


def _detached(row: Event) -> Event:
    """A copy of the locked row for the receivers, with a payload of its own: the locked
    row stays as stored, for a failure record should the row vanish meanwhile."""
    detached = copy.copy(row)
    detached._state = copy.copy(row._state)
    detached.payload = copy.deepcopy(row.payload)
    return detached


def fail_first_delivery(using: str, start: FirstDelivery, error: BaseException) -> Result:
    """Record a first delivery whose INSERT's save signal failed (in an attempt, or task
    mode's INSERT): the event is stored as failed, with the traceback."""
    event = start.pristine_event()
    record = AttemptRecord.first(event, timezone.now(), token="")
    return _failed(using, start, _Opened(event, record, stored=None), error, at_commit=False)


def _failed(
    using: str,
    start: FirstDelivery | StoredEvent,
    opened: _Opened,
    exc: BaseException,
    *,
    at_commit: bool,
) -> Result:
    """Record a failed attempt, then raise again an exception that asks the process to
    stop (not an ``Exception``: ``SystemExit``, ``KeyboardInterrupt``): the failure is
    stored first."""
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
    start: FirstDelivery | StoredEvent,
    opened: _Opened | None,
    ended: Result | Found | Conflict | None,
    exc: BaseException,
) -> Result | Found | Conflict:
    """The outcome of an attempt that committed, when an ``on_commit`` callback raised."""
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
    # Stored nowhere else (the event is processed): its frames, without the messages,
    # which can quote payload values.
    logger.error(
        "An on_commit callback raised %s after Klarefi event %s was committed; the event "
        "is not processed again for it.\n%s",
        safe_text(type(exc).__qualname__),
        safe_text(start.event_id),
        safe_text(redacted_traceback(exc)),
        extra=log_extra(event_id=safe_text(start.event_id)),
    )
    return result
