"""Store verified Klarefi events once, and run their handlers: the one processing path.

Two entry points, and everything else goes through them:

* :func:`receive_event` takes a verified delivery (the receiver's only call). It stores a
  new event and runs its handlers, or, given ``enqueue``, queues them; a redelivery is
  counted and, unless already processed, run or queued again.
* :func:`process_event` runs a stored event's handlers now: the admin, the API,
  ``klarefi_reprocess`` and the task all call it.

Both run the handlers through one function, :func:`django_klarefi.attempts.run_attempt`,
so receivers see the same state whichever path ran them: ``event.status == "processed"``,
``event.error`` empty, ``event.processed_at`` this attempt's start and ``event.attempts``
counting this attempt. That is the row as it commits if every receiver succeeds, in the
same transaction as their writes (a new event's row is inserted before the receivers run,
a stored one's is updated after them). Anything that fails up to and including the COMMIT
rolls all of it back, and the failure (status ``failed``, the traceback, the attempt) is
then written in a transaction of its own.

No status is ever persisted while handlers run: an attempt holds the row (a new row's
INSERT, or a lock) inside its transaction, so a crashed process leaves the row as it was
before the attempt, where a redelivery, ``klarefi_reprocess`` or the admin picks it up.

Status, attempts, deliveries and error are written here, in ``attempts`` (the failure
record) and in ``storing`` (a delivery's INSERT, or its count), nowhere else; the lock that
keeps concurrent attempts from waiting is in ``locks``. This module knows nothing of HTTP,
nor of the Tasks framework: task mode passes ``enqueue``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from django_klarefi.attempts import AlreadyStored, EventMissing, run_attempt, send_event_signals
from django_klarefi.locks import EventLocked, lock_event
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome, Result
from django_klarefi.payloads import InvalidEvent, event_fields
from django_klarefi.storing import (
    Found,
    count_processed_redelivery,
    insert_or_count,
    needs_transaction,
)

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

#: Enqueues an event's processing; called after the event's row commits.
Enqueue = Callable[[Event], None]

#: Rows per query when walking many events (``events_in_pk_order``).
CHUNK_SIZE = 500

# How often a delivery tries to store an event whose row keeps vanishing (deleted between
# the INSERT that found it and the lock that wants it) before asking for a retry.
_STORE_TRIES = 3


def receive_event(
    payload: dict[str, Any],
    *,
    raw_body: bytes,
    signed_at: int,
    enqueue: Enqueue | None = None,
) -> Result:
    """Store one verified delivery and process it now, or queue it with ``enqueue``.

    A new event costs one transaction: the INSERT (on PostgreSQL in one statement with a
    claim on the event id, see :func:`django_klarefi.storing.insert_or_count`; on SQLite
    after the counting UPDATE that finds nothing), the handlers, the COMMIT; queued, no
    handlers. A redelivery of a processed event is counted by one UPDATE (on
    PostgreSQL, that same statement), and never waits on handlers running elsewhere.
    Raises :class:`InvalidEvent` for a payload that cannot be stored, and
    ``DatabaseError`` when the database cannot be reached: nothing is written.
    """
    fields = event_fields(payload, raw_body, signed_at)
    event_id = fields["event_id"]
    using = router.db_for_write(Event)
    now = timezone.now()
    duplicate: IntegrityError | None = None
    for _ in range(_STORE_TRIES):
        try:
            return _store_new(Event(**fields), using, now, enqueue)
        except AlreadyStored as stored:
            duplicate, counting_tried = stored.error, stored.counting_tried
        except EventLocked:
            # PostgreSQL: another delivery of this event holds its claim (the first one
            # running its handlers), and no processed row could be counted.
            return _in_flight(event_id)
        # Outside the except block, so that no traceback recorded from here on carries
        # the duplicate key as its context.
        try:
            if not counting_tried and count_processed_redelivery(event_id, using, now):
                return Result(Outcome.ALREADY_PROCESSED, event_id)
            return _attempt(using, event_id, delivered_at=now, enqueue=enqueue)
        except EventMissing:
            continue  # deleted since the INSERT found it: store it again, as new
    if duplicate is not None:
        # An IntegrityError every time, yet never a row to be found: not a duplicate event
        # id but another constraint (a trigger, a check of the project's own). Say so.
        raise duplicate
    # Found stored, and gone at the lock, each time (rows deleted meanwhile): retry later.
    return _in_flight(event_id)


def process_event(event: Event, *, force: bool = False) -> Result:
    """Run a stored event's handlers now, and record the outcome on its row.

    The row is locked for the attempt: on PostgreSQL (and other databases with
    ``SELECT ... FOR UPDATE NOWAIT``), an event whose handlers are already running
    elsewhere returns ``IN_FLIGHT`` at once; on SQLite, attempts queue on the database's
    write lock. A processed event is left alone unless ``force`` is true. An event deleted
    meanwhile returns ``MISSING``.
    """
    using = router.db_for_write(Event)
    try:
        return _attempt(using, event.event_id, force=force)
    except EventMissing:
        return Result(Outcome.MISSING, event.event_id)


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


def _store_new(event: Event, using: str, now: datetime, enqueue: Enqueue | None) -> Result:
    """INSERT a new event, then run or queue its handlers. A redelivery of a processed
    event is counted there and then; ``AlreadyStored`` for any other stored event."""
    event.deliveries, event.received_at, event.last_received_at = 1, now, now
    if enqueue is None:
        return run_attempt(
            using,
            begin=lambda: event,
            write=lambda event: _insert(event, using),  # before the receivers run
            insert=True,
            delivered=True,
        )
    # Queued: in autocommit, no BEGIN/COMMIT pair: on PostgreSQL the one statement (its
    # claim lasts the statement), on SQLite the count then the INSERT; on_commit enqueues
    # at once. With a pre_save receiver, in a transaction (see needs_transaction). Inside a
    # caller's transaction, a savepoint keeps a duplicate's IntegrityError from breaking it.
    atomic = connections[using].in_atomic_block or needs_transaction()
    try:
        with transaction.atomic(using=using) if atomic else nullcontext():
            counted = _insert(event, using)
            if counted is None:
                transaction.on_commit(lambda: _enqueue(enqueue, event), using=using)
    except EnqueueFailed:
        # Committed as pending; the redelivery (or klarefi_reprocess --pending) queues it.
        return Result(Outcome.NOT_QUEUED, event.event_id, event)
    return counted or Result(Outcome.QUEUED, event.event_id, event)


def _insert(event: Event, using: str) -> Result | None:
    """INSERT a new event's row: None once inserted, a result when the delivery ends here.

    :func:`~django_klarefi.storing.insert_or_count` counts a processed event's redelivery
    first, in the same transaction (on PostgreSQL, in the same statement). Raises
    ``EventLocked`` when another delivery holds the claim, ``AlreadyStored`` when a row
    exists that was not counted.
    """
    try:
        found = insert_or_count(using, event)
    except IntegrityError as exc:
        # A row committed after the look, or another constraint: not counted yet.
        raise AlreadyStored(exc) from None
    if found is Found.INSERTED:
        return None
    if found is Found.COUNTED:
        return Result(Outcome.ALREADY_PROCESSED, event.event_id)
    if found is Found.BUSY:
        raise EventLocked
    # LOCKED: processed, and its lock may be a redelivery's, gone in a moment: count again.
    raise AlreadyStored(counting_tried=found is Found.STORED)


def _attempt(
    using: str,
    event_id: str,
    *,
    delivered_at: datetime | None = None,
    enqueue: Enqueue | None = None,
    force: bool = False,
) -> Result:
    """Lock a stored event, count a delivery, and run (or queue) its handlers."""
    counted = ["deliveries", "last_received_at"] if delivered_at is not None else []

    def begin() -> Event | Result:
        event = lock_event(using, event_id)
        if event is None:
            raise EventMissing
        if delivered_at is not None:
            event.deliveries += 1
            event.last_received_at = delivered_at
        if event.status == Status.PROCESSED and not force:
            if counted:
                event.save(update_fields=counted, using=using)
            return Result(Outcome.ALREADY_PROCESSED, event_id, event)
        if enqueue is not None:
            event.save(update_fields=counted, using=using)
            transaction.on_commit(lambda: _enqueue(enqueue, event), using=using)
            return Result(Outcome.QUEUED, event_id, event)
        return event

    def write(event: Event) -> None:
        fields = [*counted, "status", "error", "attempts", "processed_at"]
        event.save(update_fields=fields, using=using)

    try:
        return run_attempt(using, begin=begin, write=write, insert=False, delivered=bool(counted))
    except EventLocked:
        return _in_flight(event_id)


def _in_flight(event_id: str) -> Result:
    logger.info("Klarefi event %s is being processed elsewhere; retry later.", event_id)
    return Result(Outcome.IN_FLIGHT, event_id)


def _enqueue(enqueue: Enqueue, event: Event) -> None:
    try:
        enqueue(event)
    except Exception as exc:
        logger.exception(
            "Could not enqueue Klarefi event %s (%s); it stays pending.",
            event.event_id,
            event.event_type,
        )
        raise EnqueueFailed(str(exc)) from exc
