"""Store verified Klarefi events once, and run their handlers: the one processing path.

Two entry points, and everything else goes through them:

* :func:`receive_event` takes a verified delivery (the receiver's only call). It stores a
  new event and runs its handlers, or, given ``enqueue``, queues them; a redelivery is
  counted and, unless already processed, run or queued again.
* :func:`process_event` runs a stored event's handlers now: the admin, the API,
  ``klarefi_reprocess`` and the task all call it.

Both run the handlers through one function, :func:`_attempt_handlers`, so receivers see
the same state whichever path ran them: ``event.status == "processed"``, ``event.error``
empty, ``event.processed_at`` this attempt's start and ``event.attempts`` counting this
attempt. That is the row as it commits if every receiver succeeds, in the same transaction
as their writes (a new event's row is inserted before the receivers run, a stored one's is
updated after them). Anything that fails up to and including the COMMIT rolls all of it
back, and the failure (status ``failed``, the traceback, the attempt) is then written in a
transaction of its own.

No status is ever persisted while handlers run: an attempt holds the row (a new row's
INSERT, or a lock) inside its transaction, so a crashed process leaves the row as it was
before the attempt, where a redelivery, ``klarefi_reprocess`` or the admin picks it up.

Status, attempts, deliveries and error are written here and nowhere else. This module
knows nothing of HTTP, nor of the Tasks framework: task mode passes ``enqueue``.
"""

from __future__ import annotations

import enum
import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.payloads import InvalidEvent, event_fields
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

#: Enqueues an event's processing; called after the event's row commits.
Enqueue = Callable[[Event], None]

#: Rows per query when walking many events (``events_in_pk_order``).
CHUNK_SIZE = 500

# How often a delivery tries to store an event whose row keeps vanishing (deleted between
# the INSERT that found it and the lock that wants it) before asking for a retry.
_STORE_TRIES = 3

# The first key of django-klarefi's PostgreSQL advisory locks (the second is a hash of the
# event id), so that they do not meet the advisory locks of other code: "klar" in ASCII.
_ADVISORY_LOCK_CLASS = 0x6B6C6172


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
    #: A handler (or the commit of their writes) failed; stored as failed with the error.
    FAILED = "failed"
    #: Another process is running this event's handlers right now: retry later.
    IN_FLIGHT = "in_flight"
    #: The event's row no longer exists (deleted meanwhile); nothing ran.
    MISSING = "missing"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    event_id: str
    #: The row as written, when this call has it in hand.
    event: Event | None = None


class EnqueueFailed(Exception):
    """The task backend refused the task; the event stays pending."""


class _AlreadyStored(Exception):
    pass


class _EventLocked(Exception):
    pass


class _EventMissing(Exception):
    pass


def receive_event(
    payload: dict[str, Any],
    *,
    raw_body: bytes,
    signed_at: int,
    enqueue: Enqueue | None = None,
) -> Result:
    """Store one verified delivery and process it now, or queue it with ``enqueue``.

    A new event costs one transaction: the INSERT, the handlers, the COMMIT; queued, the
    INSERT alone. A redelivery of a processed event costs one UPDATE, and never waits on
    handlers running elsewhere. Raises :class:`InvalidEvent` for a payload that cannot be
    stored, and ``DatabaseError`` when the database cannot be reached: nothing is written.
    """
    fields = event_fields(payload, raw_body, signed_at)
    using = router.db_for_write(Event)
    now = timezone.now()
    for _ in range(_STORE_TRIES):
        try:
            return _store_new(Event(**fields), using, now, enqueue)
        except _AlreadyStored:
            pass
        # Outside the except block, so that no traceback recorded from here on carries
        # the duplicate key as its context.
        try:
            return _receive_again(fields["event_id"], using=using, now=now, enqueue=enqueue)
        except _EventMissing:
            continue  # deleted since the INSERT found it: store it again, as new
    return Result(Outcome.IN_FLIGHT, fields["event_id"])


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
    except _EventMissing:
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


def send_event_signals(event: Event) -> None:
    """Send the event's per-type signal (if its type is documented), then ``event_received``.

    Exceptions propagate: they are what marks the event failed.
    """
    signal = EVENT_SIGNALS.get(event.event_type)
    if signal is not None:
        signal.send(sender=Event, event=event)
    event_received.send(sender=Event, event=event)


def _store_new(event: Event, using: str, now: datetime, enqueue: Enqueue | None) -> Result:
    """INSERT a new event, then run or queue its handlers. ``_AlreadyStored`` if it exists."""
    event.deliveries, event.received_at, event.last_received_at = 1, now, now

    def insert(event: Event) -> None:
        try:
            # On SQLite the INSERT is the transaction's first statement: that takes the
            # write lock at once, waiting out its busy timeout if need be, instead of
            # failing with "database is locked" on a later write (as a deferred
            # transaction that reads first does).
            event.save(force_insert=True, using=using)
        except IntegrityError:
            raise _AlreadyStored from None

    if enqueue is None:

        def claim_and_insert(event: Event) -> None:
            # On PostgreSQL, an INSERT of an event whose first delivery has not committed
            # yet would wait, on the unique index, for as long as that delivery's
            # handlers run. A claim on the event id (an advisory lock that ends with the
            # transaction) answers such a redelivery IN_FLIGHT at once instead.
            if not _claim_event_id(using, event.event_id):
                raise _EventLocked
            insert(event)

        try:
            return _attempt_handlers(
                using, begin=lambda: event, write=claim_and_insert, insert=True, delivered=True
            )
        except _EventLocked:
            return _in_flight(event.event_id)
    # Queued: the INSERT is the only statement. In autocommit it needs no BEGIN/COMMIT
    # pair, and on_commit enqueues at once. Inside a caller's transaction, a savepoint
    # still keeps a duplicate's IntegrityError from breaking that transaction.
    in_transaction = connections[using].in_atomic_block
    try:
        with transaction.atomic(using=using) if in_transaction else nullcontext():
            insert(event)
            transaction.on_commit(lambda: _enqueue(enqueue, event), using=using)
    except EnqueueFailed:
        # Committed as pending; the redelivery (or klarefi_reprocess --pending) queues it.
        return Result(Outcome.NOT_QUEUED, event.event_id, event)
    return Result(Outcome.QUEUED, event.event_id, event)


def _receive_again(event_id: str, *, using: str, now: datetime, enqueue: Enqueue | None) -> Result:
    if _count_processed_redelivery(event_id, using, now):
        return Result(Outcome.ALREADY_PROCESSED, event_id)
    return _attempt(using, event_id, delivered_at=now, enqueue=enqueue)


def _count_processed_redelivery(event_id: str, using: str, now: datetime) -> bool:
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
        f"AND {status} = %s FOR UPDATE SKIP LOCKED)"
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
        event = _lock_event(using, event_id)
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
        return _attempt_handlers(
            using, begin=begin, write=write, insert=False, delivered=bool(counted)
        )
    except _EventLocked:
        return _in_flight(event_id)


def _attempt_handlers(
    using: str,
    *,
    begin: Callable[[], Event | Result],
    write: Callable[[Event], None],
    insert: bool,
    delivered: bool,
) -> Result:
    """Run an event's handlers in one transaction: the one place where handlers run.

    In the transaction: ``begin()`` gives the event (locked, or new), or a result that
    ends the attempt before any handler runs. The success state is set on the event,
    the signals are sent, and ``write`` writes the row: a new one (``insert``) before
    the signals, so that it exists for the receivers and, on SQLite, its INSERT takes the
    write lock first; a stored one after them, so that the row carries only a lock while
    receivers run (a concurrent redelivery's INSERT of the same id fails at once on a
    locked row, but would wait on an updated one). Then COMMIT. Whatever raises after
    the attempt began (a receiver, a query, or the COMMIT itself, as a deferred
    constraint does) rolls all of it back, and the failure is recorded in a transaction
    of its own. An exception from an ``on_commit`` callback, after a successful COMMIT,
    is logged and changes nothing.
    """
    committed = False
    event: Event | None = None
    result: Result | None = None
    previously_processed_at: datetime | None = None

    def mark_committed() -> None:
        nonlocal committed
        committed = True

    try:
        with transaction.atomic(using=using):
            # First in the transaction's on_commit list: it runs, before any callback a
            # handler registers, only once the COMMIT has succeeded.
            transaction.on_commit(mark_committed, using=using)
            begun = begin()
            if isinstance(begun, Result):
                result = begun
            else:
                previously_processed_at = begun.processed_at
                begun.status, begun.error = Status.PROCESSED, ""
                begun.processed_at = timezone.now()
                begun.attempts += 1
                if insert:
                    write(begun)
                event = begun
                send_event_signals(event)
                if not insert:
                    write(event)
                result = Result(Outcome.PROCESSED, event.event_id, event)
    except (_AlreadyStored, _EventLocked, _EventMissing):
        raise
    except Exception as exc:
        if committed and result is not None:
            # The COMMIT succeeded; a callback registered with on_commit raised after it.
            if isinstance(exc, EnqueueFailed):
                return Result(Outcome.NOT_QUEUED, result.event_id, result.event)
            logger.exception(
                "An on_commit callback raised after Klarefi event %s was committed as %s; "
                "the event is not processed again for it.",
                result.event_id,
                result.outcome,
            )
            return result
        if event is None:
            raise  # our own statements failed (the database is unavailable): nothing written
        error = traceback.format_exc()
        logger.exception(
            "Processing Klarefi event %s (%s) failed; it is stored as failed.",
            event.event_id,
            event.event_type,
        )
        return _record_failure(
            event, using, error, delivered=delivered, processed_at=previously_processed_at
        )
    assert result is not None
    return result


def _record_failure(
    event: Event, using: str, error: str, *, delivered: bool, processed_at: datetime | None
) -> Result:
    """Write a failed attempt on ``event``'s row, in a transaction of its own.

    The attempt's own writes were rolled back, the row with them if this was its first
    delivery. The row is updated unless an attempt that began after this one succeeded
    meanwhile (its ``processed_at`` is its start); a row that does not exist (the first
    delivery's, or one deleted meanwhile) is inserted as failed.
    """
    started = event.processed_at
    event.status, event.error, event.processed_at = Status.FAILED, error, processed_at
    changes: dict[str, Any] = {
        "status": Status.FAILED,
        "error": error,
        "attempts": F("attempts") + 1,
    }
    if delivered:
        changes.update(deliveries=F("deliveries") + 1, last_received_at=event.last_received_at)
    rows = Event.objects.using(using).filter(event_id=event.event_id)
    for _ in range(2):
        if rows.exclude(status=Status.PROCESSED, processed_at__gte=started).update(**changes):
            return Result(Outcome.FAILED, event.event_id, event)
        failed = Event(
            **{
                field.attname: getattr(event, field.attname)
                for field in Event._meta.concrete_fields
                if not field.primary_key
            }
        )
        try:
            with transaction.atomic(using=using):
                failed.save(force_insert=True, using=using)
        except IntegrityError:
            continue  # stored meanwhile by a concurrent delivery: count it on that row
        return Result(Outcome.FAILED, event.event_id, failed)
    # A concurrent attempt that began after this one succeeded: the event is processed.
    return Result(Outcome.FAILED, event.event_id)


def _in_flight(event_id: str) -> Result:
    logger.info("Klarefi event %s is being processed elsewhere; retry later.", event_id)
    return Result(Outcome.IN_FLIGHT, event_id)


def _claim_event_id(using: str, event_id: str) -> bool:
    """On PostgreSQL, take this transaction's advisory lock on ``event_id``; False when
    another transaction holds it. Elsewhere always True (SQLite writes one at a time)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [_ADVISORY_LOCK_CLASS, event_id]
        )
        return bool(cursor.fetchone()[0])


def _lock_event(using: str, event_id: str) -> Event:
    events = Event.objects.using(using).filter(event_id=event_id)
    if connections[using].features.has_select_for_update_nowait:
        try:
            event = events.select_for_update(nowait=True).first()
        except DatabaseError as exc:
            if _is_lock_not_available(exc):
                raise _EventLocked from exc
            raise
    else:
        # SQLite has no row locks: write before reading, so that this transaction takes
        # the database's write lock first (waiting out the busy timeout) and attempts run
        # one at a time. The UPDATE changes nothing.
        events.update(attempts=F("attempts"))
        event = events.first()
    if event is None:
        raise _EventMissing
    return event


def _is_lock_not_available(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    # PostgreSQL's lock_not_available (psycopg 3: sqlstate, psycopg2: pgcode); MySQL's
    # ER_LOCK_NOWAIT.
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == "55P03" or getattr(cause, "args", (None,))[:1] == (3572,)


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
