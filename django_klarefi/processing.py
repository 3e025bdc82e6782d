"""Store verified Klarefi events once, and run their handlers: the one processing path.

Two entry points, and everything else goes through them:

* :func:`receive_event` takes a verified delivery (the receiver's only call). It stores a
  new event and runs its handlers, or, given ``enqueue``, queues them; a redelivery is
  counted and, unless already processed, run or queued again.
* :func:`process_event` runs a stored event's handlers now: the admin, the API,
  ``klarefi_reprocess`` and the task all call it.

A delivery reads top-down: its columns (:mod:`~django_klarefi.payloads`), then one attempt
as a first delivery (:func:`~django_klarefi.attempts.run_attempt`, whose INSERT is
:func:`~django_klarefi.storing.insert_or_count`), and only if that found the event id
stored, the count of a processed event's redelivery or one attempt at the stored event.
Each step returns what it found; the attempt writes its own bookkeeping
(:mod:`~django_klarefi.records`), never read back from the object its receivers had.

Receivers see the same state whichever path ran them: ``event.status == "processed"``,
``event.error`` empty, ``event.processed_at`` this attempt's start and ``event.attempts``
counting this attempt: the row as the attempt records it if every receiver succeeds, in
the same transaction as their writes. Anything that fails up to and including the COMMIT
rolls all of it back, and the failure (status ``failed``, the traceback, the attempt) is
then written in a transaction of its own. No status is persisted while handlers run, so
a crashed process leaves the row as it was before the attempt, for a redelivery,
``klarefi_reprocess`` or the admin to pick up.

This module knows nothing of HTTP, nor of the Tasks framework: task mode passes
``enqueue``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from django_klarefi.attempts import fail_first_delivery, run_attempt, send_event_signals
from django_klarefi.endpoint_settings import DEFAULT_ENDPOINT
from django_klarefi.log_fields import log_extra
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome, Result
from django_klarefi.payloads import InvalidEvent, event_fields
from django_klarefi.records import safe_text
from django_klarefi.starts import Conflict, Enqueue, FirstDelivery, StoredEvent, enqueue_event
from django_klarefi.storing import (
    Found,
    SaveSignalFailed,
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
    endpoint: str = DEFAULT_ENDPOINT,
) -> Result:
    """Store one verified delivery to ``endpoint`` and process it now, or queue it with
    ``enqueue``. An event is one per endpoint: the same id delivered to two endpoints is
    two events.

    A new event costs one transaction: the INSERT, with the attempt's record (on
    PostgreSQL in one statement with a claim on the event id, see
    :func:`django_klarefi.storing.insert_or_count`), the handlers, the record again if
    they ran statements of their own, the COMMIT; queued, the INSERT alone. A redelivery of
    a processed event is counted by one UPDATE (on PostgreSQL, that same statement), and
    never waits on handlers running elsewhere. Raises :class:`InvalidEvent` for a payload
    that cannot be stored, and ``DatabaseError`` when the database cannot be reached:
    nothing is written.
    """
    fields = {**event_fields(payload, raw_body, signed_at), "endpoint": endpoint}
    first = FirstDelivery(fields, raw_body, signed_at, timezone.now())
    using = router.db_for_write(Event)
    conflict: IntegrityError | None = None
    for _ in range(_STORE_TRIES):
        found = run_attempt(using, first) if enqueue is None else _queue(using, first, enqueue)
        if isinstance(found, Result):
            return found
        if found is Found.COUNTED:
            return Result(Outcome.ALREADY_PROCESSED, first.event_id)
        if found is Found.BUSY:
            # PostgreSQL: another delivery of this event holds its claim (the first one
            # running its handlers), and no processed row could be counted.
            return _in_flight(first.event_id)
        conflict = found.error if isinstance(found, Conflict) else None
        # LOCKED, or a row committed after the look: it may be processed; count on it.
        counted = found is not Found.STORED and count_processed_redelivery(
            using, endpoint, first.event_id, first.delivered_at
        )
        if counted:
            return Result(Outcome.ALREADY_PROCESSED, first.event_id)
        stored = StoredEvent(
            endpoint, first.event_id, delivered_at=first.delivered_at, enqueue=enqueue
        )
        result = run_attempt(using, stored)
        assert isinstance(result, Result)
        if result.outcome is not Outcome.MISSING:
            return result
        # Deleted since the INSERT found it: store it again, as new.
    if conflict is not None:
        # A unique violation every time, yet never a row to be found: not a stored event
        # id but another constraint (a trigger, a check of the project's own). Say so.
        raise conflict
    # Found stored, and gone at the lock, each time (rows deleted meanwhile): retry later.
    return _in_flight(first.event_id)


def process_event(event: Event, *, force: bool = False) -> Result:
    """Run a stored event's handlers now, and record the outcome on its row.

    The row is locked for the attempt: on PostgreSQL (and other databases with
    ``SELECT ... FOR UPDATE NOWAIT``), an event whose handlers are already running
    elsewhere returns ``IN_FLIGHT`` at once; on SQLite, attempts queue on the database's
    write lock. A processed event is left alone unless ``force`` is true. An event deleted
    meanwhile returns ``MISSING``; one whose personal data was erased, ``ERASED``.
    """
    stored = StoredEvent(event.endpoint, event.event_id, force=force)
    result = run_attempt(router.db_for_write(Event), stored)
    assert isinstance(result, Result)
    return result


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


def _queue(using: str, first: FirstDelivery, enqueue: Enqueue) -> Result | Found | Conflict:
    """Task mode: insert a new event as pending and enqueue it once committed.

    In autocommit, with no BEGIN/COMMIT pair: on PostgreSQL the one statement (its claim
    lasts the statement), on SQLite the count then the INSERT; ``on_commit`` enqueues at
    once. With a save-signal receiver connected, in a transaction (see
    :func:`~django_klarefi.storing.needs_transaction`): if it fails, nothing is committed
    behind the error, and the event is stored as failed. Inside a caller's transaction, a
    savepoint keeps a duplicate's ``IntegrityError`` from breaking it.
    """
    event = first.new_event()
    atomic = connections[using].in_atomic_block or needs_transaction()
    try:
        with transaction.atomic(using=using) if atomic else nullcontext():
            found = insert_or_count(using, event)
            if found is Found.INSERTED:
                transaction.on_commit(lambda: enqueue_event(enqueue, event), using=using)
    except EnqueueFailed:
        # Committed as pending; the redelivery (or klarefi_reprocess --pending) queues it.
        return Result(Outcome.NOT_QUEUED, first.event_id)
    except IntegrityError as exc:
        return Conflict(exc)
    except SaveSignalFailed as exc:
        return fail_first_delivery(using, first, exc.error)
    return Result(Outcome.QUEUED, first.event_id) if found is Found.INSERTED else found


def _in_flight(event_id: str) -> Result:
    logger.info(
        "Klarefi event %s is being processed elsewhere; retry later.",
        safe_text(event_id),
        extra=log_extra(event_id=safe_text(event_id), outcome=Outcome.IN_FLIGHT),
    )
    return Result(Outcome.IN_FLIGHT, event_id)
