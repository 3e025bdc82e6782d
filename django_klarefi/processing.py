"""Store verified Klarefi events once, and run their handlers: the one processing path.

Two entry points, and everything else goes through them:

* :func:`receive_event` takes a verified delivery (the view's only call). It stores a
  new event and runs its handlers (``KLAREFI_PROCESSING = "sync"``) or queues them
  (``"task"``); a redelivery is counted and, unless already processed, run or queued again.
* :func:`process_event` runs a stored event's handlers now: the admin action,
  ``klarefi_reprocess``, the task and the send-test page all call it.

Status, attempts, deliveries and error are written here and nowhere else. No status is
ever persisted while handlers run ("processing"): an attempt holds a lock inside a
transaction instead, so a crashed process leaves the row as it was before the attempt,
where a redelivery, ``klarefi_reprocess`` or the admin can pick it up.

This module knows nothing of HTTP.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import traceback
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from django_klarefi.conf import conf
from django_klarefi.models import (
    EVENT_ID_MAX_LENGTH,
    EVENT_TYPE_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    Event,
)
from django_klarefi.signals import EVENT_SIGNALS, event_received

__all__ = [
    "EnqueueFailed",
    "InvalidEvent",
    "Outcome",
    "Result",
    "events_in_pk_order",
    "process_event",
    "receive_event",
    "send_event_signals",
]

logger = logging.getLogger("django_klarefi")

Status = Event.Status

#: Rows per query when walking many events (``events_in_pk_order``).
CHUNK_SIZE = 500

#: Deeper payloads are refused (400): Python's JSON parser accepts nesting up to its
#: recursion limit, but storing such a payload (and handler code walking it) recurses
#: deeper than parsing did, and would fail with RecursionError.
MAX_PAYLOAD_DEPTH = 100


class Outcome(enum.StrEnum):
    """What became of a delivery or a processing attempt."""

    #: The handlers ran now and succeeded.
    PROCESSED = "processed"
    #: The event had been processed before; nothing ran (a redelivery was counted).
    ALREADY_PROCESSED = "already_processed"
    #: Stored as pending, and a task was enqueued after commit.
    QUEUED = "queued"
    #: Stored as pending, but enqueueing the task raised: retry the delivery.
    NOT_QUEUED = "not_queued"
    #: A handler raised; the event is stored as failed with the traceback.
    FAILED = "failed"
    #: Another process is running this event's handlers right now: retry later.
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    event_id: str
    #: The row as written, when this call has it in hand.
    event: Event | None = None


class InvalidEvent(ValueError):
    """A verified payload that cannot be stored as an event."""


class EnqueueFailed(Exception):
    """The task backend refused the task; the event stays pending."""


class _AlreadyStored(Exception):
    pass


class _HandlerFailed(Exception):
    def __init__(self, error: str) -> None:
        self.error = error


class _EventLocked(Exception):
    pass


def receive_event(payload: dict[str, Any], *, raw_body: bytes, signed_at: int) -> Result:
    """Store one verified delivery and process or queue it.

    A new event costs one transaction: the INSERT, then (sync mode) the handlers, then
    the commit; in task mode, the INSERT alone. A redelivery of a processed event costs
    one UPDATE.
    """
    fields = _event_fields(payload, raw_body, signed_at)
    using = router.db_for_write(Event)
    queue = conf.PROCESSING == "task"
    now = timezone.now()
    event = Event(**fields, deliveries=1, received_at=now, last_received_at=now)
    if not queue:
        # Written as processed up front: the row and the handlers' writes commit together,
        # or (when a handler raises) roll back together, so "processed" is never visible
        # for an event whose handlers did not all succeed.
        event.status, event.attempts, event.processed_at = Status.PROCESSED, 1, now
    # Task mode's INSERT is the only statement: in autocommit it needs no BEGIN/COMMIT
    # pair, and on_commit then enqueues at once. Inside a caller's transaction, a savepoint
    # still keeps a duplicate's IntegrityError from breaking that transaction.
    in_transaction = connections[using].in_atomic_block
    block = transaction.atomic(using=using) if not queue or in_transaction else nullcontext()
    try:
        with block:
            try:
                # The INSERT is the transaction's first statement. On SQLite that takes the
                # write lock at once, waiting out its busy timeout if need be, instead of
                # failing with "database is locked" on a later write (as a deferred
                # transaction that reads first does). On PostgreSQL, a concurrent delivery
                # of the same event waits here until this one commits or rolls back.
                event.save(force_insert=True, using=using)
            except IntegrityError:
                raise _AlreadyStored from None
            if queue:
                transaction.on_commit(partial(_enqueue, event), using=using, robust=False)
            else:
                try:
                    send_event_signals(event)
                except Exception:
                    _log_handler_failure(event)
                    raise _HandlerFailed(traceback.format_exc()) from None
    except _AlreadyStored:
        return _receive_again(fields["event_id"], using=using, now=now, queue=queue)
    except _HandlerFailed as failure:
        # The rollback took the row with the handlers' writes. Record the failure in a
        # transaction of its own, so that it survives and the event can be retried.
        return _record_failed_delivery(fields, using=using, now=now, error=failure.error)
    except EnqueueFailed:
        # Committed as pending; the redelivery (or klarefi_reprocess --pending) queues it.
        return Result(Outcome.NOT_QUEUED, event.event_id, event)
    return Result(Outcome.QUEUED if queue else Outcome.PROCESSED, event.event_id, event)


def process_event(event: Event, *, force: bool = False) -> Result:
    """Run a stored event's handlers now, and record the outcome on its row.

    The row is locked for the attempt: on PostgreSQL (and other databases with
    ``SELECT ... FOR UPDATE NOWAIT``), an event whose handlers are already running
    elsewhere returns ``IN_FLIGHT`` at once; on SQLite, attempts queue on the database's
    write lock. A processed event is left alone unless ``force`` is true.
    """
    using = router.db_for_write(Event)
    return _attempt(using, event_id=event.event_id, force=force)


def events_in_pk_order(events: QuerySet[Event], *, chunk_size: int = CHUNK_SIZE) -> Iterator[Event]:
    """``events`` in primary-key order, ``chunk_size`` rows per query, for callers that
    process many events (the admin action, ``klarefi_reprocess``).

    Processing changes the rows, maybe the very column a filter selects on, so each chunk
    starts after the last key seen (keyset pagination): no event is skipped or repeated,
    memory stays bounded, and no cursor stays open across the handlers' commits. Events
    stored after the walk starts are left out. Choose the columns with ``.only()``.
    """
    last = events.aggregate(last=Max("pk"))["last"]
    if last is None:
        return
    after = 0
    while True:
        chunk = list(events.filter(pk__gt=after, pk__lte=last).order_by("pk")[:chunk_size])
        yield from chunk
        if len(chunk) < chunk_size:
            return
        after = chunk[-1].pk


def send_event_signals(event: Event) -> None:
    """Send the event's per-type signal (if its type is documented), then ``event_received``.

    Exceptions propagate: they are what marks the event failed.
    """
    signal = EVENT_SIGNALS.get(event.event_type)
    if signal is not None:
        signal.send(sender=Event, event=event)
    event_received.send(sender=Event, event=event)


def _receive_again(event_id: str, *, using: str, now: datetime, queue: bool) -> Result:
    # Fast path: count a redelivery of a processed event with one UPDATE. It never waits
    # on an attempt in flight: that row's committed status is not "processed", so the
    # WHERE clause does not match it.
    counted = (
        Event.objects.using(using)
        .filter(event_id=event_id, status=Status.PROCESSED)
        .update(deliveries=F("deliveries") + 1, last_received_at=now)
    )
    if counted:
        return Result(Outcome.ALREADY_PROCESSED, event_id)
    return _attempt(using, event_id=event_id, delivered_at=now, queue=queue)


def _attempt(
    using: str,
    *,
    event_id: str,
    delivered_at: datetime | None = None,
    queue: bool = False,
    force: bool = False,
) -> Result:
    """Lock a stored event and run (or queue) its handlers, recording the outcome."""
    try:
        with transaction.atomic(using=using):
            event = _lock_event(using, event_id)
            fields: list[str] = []
            if delivered_at is not None:
                event.deliveries += 1
                event.last_received_at = delivered_at
                fields += ["deliveries", "last_received_at"]
            if event.status == Status.PROCESSED and not force:
                if fields:
                    event.save(update_fields=fields, using=using)
                return Result(Outcome.ALREADY_PROCESSED, event_id, event)
            if queue:
                event.save(update_fields=fields, using=using)
                transaction.on_commit(partial(_enqueue, event), using=using, robust=False)
                return Result(Outcome.QUEUED, event_id, event)

            started = timezone.now()
            event.attempts += 1
            try:
                # A savepoint of its own: when a handler raises, its writes roll back while
                # the failure record below commits with the outer transaction.
                with transaction.atomic(using=using):
                    send_event_signals(event)
            except Exception:
                _log_handler_failure(event)
                event.status, event.error = Status.FAILED, traceback.format_exc()
            else:
                event.status, event.error, event.processed_at = Status.PROCESSED, "", started
            event.save(
                update_fields=[*fields, "status", "error", "attempts", "processed_at"],
                using=using,
            )
    except _EventLocked:
        logger.info("Klarefi event %s is being processed elsewhere; retry later.", event_id)
        return Result(Outcome.IN_FLIGHT, event_id)
    except EnqueueFailed:
        return Result(Outcome.NOT_QUEUED, event_id, event)
    outcome = Outcome.PROCESSED if event.status == Status.PROCESSED else Outcome.FAILED
    return Result(outcome, event_id, event)


def _lock_event(using: str, event_id: str) -> Event:
    events = Event.objects.using(using).filter(event_id=event_id)
    if connections[using].features.has_select_for_update_nowait:
        try:
            return events.select_for_update(nowait=True).get()
        except DatabaseError as exc:
            if _is_lock_not_available(exc):
                raise _EventLocked from exc
            raise
    # SQLite has no row locks: write before reading, so that this transaction takes the
    # database's write lock first (waiting out the busy timeout) and attempts run one at
    # a time. The UPDATE changes nothing.
    events.update(attempts=F("attempts"))
    return events.get()


def _is_lock_not_available(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    # PostgreSQL's lock_not_available (psycopg 3: sqlstate, psycopg2: pgcode); MySQL's
    # ER_LOCK_NOWAIT.
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == "55P03" or getattr(cause, "args", (None,))[:1] == (3572,)


def _record_failed_delivery(
    fields: dict[str, Any], *, using: str, now: datetime, error: str
) -> Result:
    failed = Event(
        **fields,
        status=Status.FAILED,
        error=error,
        attempts=1,
        deliveries=1,
        received_at=now,
        last_received_at=now,
    )
    try:
        with transaction.atomic(using=using):
            failed.save(force_insert=True, using=using)
    except IntegrityError:
        # A concurrent delivery stored the event meanwhile. Count this delivery and its
        # attempt on that row, unless that delivery's handlers succeeded.
        Event.objects.using(using).filter(event_id=failed.event_id).exclude(
            status=Status.PROCESSED
        ).update(
            status=Status.FAILED,
            error=error,
            attempts=F("attempts") + 1,
            deliveries=F("deliveries") + 1,
            last_received_at=now,
        )
        return Result(Outcome.FAILED, failed.event_id)
    return Result(Outcome.FAILED, failed.event_id, failed)


def _enqueue(event: Event) -> None:
    # Imported here: the Tasks framework is optional, and only task mode needs it.
    from django_klarefi.tasks import enqueue_processing

    try:
        enqueue_processing(event)
    except Exception as exc:
        logger.exception(
            "Could not enqueue Klarefi event %s (%s); it stays pending.",
            event.event_id,
            event.event_type,
        )
        raise EnqueueFailed(str(exc)) from exc


def _log_handler_failure(event: Event) -> None:
    logger.exception(
        "A handler raised for Klarefi event %s (%s); it is stored as failed.",
        event.event_id,
        event.event_type,
    )


def _event_fields(payload: dict[str, Any], raw_body: bytes, signed_at: int) -> dict[str, Any]:
    """The Event columns of a verified payload."""
    event_type = payload["event"]
    if len(event_type) > EVENT_TYPE_MAX_LENGTH:
        raise InvalidEvent(f"The event type is longer than {EVENT_TYPE_MAX_LENGTH} characters.")
    if _too_deep(payload, raw_body):
        raise InvalidEvent(f"The payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep.")
    # The payload's id when it has a usable one; otherwise a digest of the exact bytes,
    # so that a redelivery of the same body is still recognised.
    event_id = _reference(payload.get("id"), EVENT_ID_MAX_LENGTH)
    if not event_id:
        event_id = "sha256:" + hashlib.sha256(raw_body).hexdigest()
    return {
        "event_id": event_id,
        "event_type": event_type,
        "case_id": _reference(payload.get("case_id"), REFERENCE_MAX_LENGTH),
        "session_id": _reference(payload.get("session_id"), REFERENCE_MAX_LENGTH),
        "payload": payload,
        "signed_at": _datetime(signed_at),
    }


def _too_deep(payload: dict[str, Any], raw_body: bytes) -> bool:
    # Cheap first: a body with few brackets cannot be deep. Then an iterative walk, as
    # a recursive one would hit the very limit it checks for.
    if raw_body.count(b"{") + raw_body.count(b"[") <= MAX_PAYLOAD_DEPTH:
        return False
    level: list[Any] = [payload]
    for _ in range(MAX_PAYLOAD_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _reference(value: object, max_length: int) -> str:
    """An id-like payload value as text, or "" when it is absent or unusable."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and len(value) <= max_length:
        return value
    return ""


def _datetime(timestamp: int) -> datetime | None:
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if settings.USE_TZ else timezone.make_naive(moment)
