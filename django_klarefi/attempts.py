"""One attempt at an event's handlers: the one place where handlers run.

:func:`run_attempt` runs the handlers in one transaction and records what became of them,
failures up to and including the COMMIT included. ``processing`` calls it for a new event
and for a stored one; it knows nothing else about where the event came from.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime

from django.db import IntegrityError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from django_klarefi.locks import EventLocked, lock_event
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome, Result
from django_klarefi.signals import EVENT_SIGNALS, event_received
from django_klarefi.storing import claim

__all__ = ["AlreadyStored", "EventMissing", "run_attempt", "send_event_signals"]

logger = logging.getLogger("django_klarefi")

Status = Event.Status


class AlreadyStored(Exception):
    """A new event's INSERT found the event id stored.

    ``counting_tried``: counting a processed event's redelivery was tried and found no
    processed row to count, so that need not be tried again.
    """

    def __init__(self, error: IntegrityError | None = None, *, counting_tried: bool = False):
        self.error = error
        self.counting_tried = counting_tried


class EventMissing(Exception):
    """A stored event's row is gone (deleted meanwhile)."""


def send_event_signals(event: Event) -> None:
    """Send the event's per-type signal (if its type is documented), then ``event_received``.

    Exceptions propagate: they are what marks the event failed.
    """
    signal = EVENT_SIGNALS.get(event.event_type)
    if signal is not None:
        signal.send(sender=Event, event=event)
    event_received.send(sender=Event, event=event)


def run_attempt(
    using: str,
    *,
    begin: Callable[[], Event | Result],
    write: Callable[[Event], Result | None],
    insert: bool,
    delivered: bool,
) -> Result:
    """Run an event's handlers in one transaction: the one place where handlers run.

    In the transaction: ``begin()`` gives the event (locked, or new), or a result that
    ends the attempt before any handler runs. The success state is set on the event,
    the signals are sent, and ``write`` writes the row: a new one (``insert``) before
    the signals, so that it exists for the receivers (a result from that ``write`` ends
    the attempt, committed, before any handler runs: a redelivery it counted instead); a
    stored one after them, so that the row carries only a lock while receivers run (an
    INSERT of the same id by another writer fails at once on a locked row, but would wait
    on an updated one). Then COMMIT. Whatever raises after the attempt began (a receiver,
    a query, or the COMMIT itself, as a deferred constraint does) rolls all of it back,
    and the failure is recorded in a transaction of its own. An exception from an
    ``on_commit`` callback, after a successful COMMIT, is logged and changes nothing.
    """
    committed = False
    event: Event | None = None
    result: Result | None = None
    before: tuple[int, datetime | None] = (0, None)  # the row's attempts and processed_at

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
                before = (begun.attempts, begun.processed_at)
                begun.status, begun.error = Status.PROCESSED, ""
                begun.processed_at = timezone.now()
                begun.attempts += 1
                if insert:
                    result = write(begun)
                if result is None:
                    event = begun
                    send_event_signals(event)
                    _raise_if_doomed(using)
                    if not insert:
                        write(event)
                    result = Result(Outcome.PROCESSED, event.event_id, event)
    except (AlreadyStored, EventLocked, EventMissing):
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
        logger.exception(
            "Processing Klarefi event %s (%s) failed; recording the failure.",
            event.event_id,
            event.event_type,
        )
        attempts, processed_at = before
        return _record_failure(
            event,
            using,
            traceback.format_exc(),
            delivered=delivered,
            attempts_before=attempts,
            processed_at=processed_at,
        )
    assert result is not None
    return result


def _raise_if_doomed(using: str) -> None:
    """Raise if the receivers left the transaction unable to commit.

    A receiver that catches a database error without an atomic block of its own, or calls
    ``transaction.set_rollback(True)``, leaves a transaction that Django would roll back
    without a word at the end of the block (and on PostgreSQL a statement that failed
    aborts the transaction even when the error was caught). The event would be answered
    as processed and then be gone; this makes it a failure instead.
    """
    connection = connections[using]
    raw = connection.connection
    info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has get_transaction_status()
    status = getattr(info, "transaction_status", None)
    if status is None and hasattr(raw, "get_transaction_status"):
        status = raw.get_transaction_status()
    # 3 is INERROR, "in a failed transaction block", in psycopg 3 and psycopg2 alike.
    if connection.needs_rollback or status == 3:
        raise TransactionManagementError(
            "A receiver caught a database error, or marked the transaction for rollback "
            "(transaction.set_rollback), so the event's writes cannot be committed. Put a "
            "statement that may fail in a transaction.atomic() block of its own."
        )


def _record_failure(
    event: Event,
    using: str,
    error: str,
    *,
    delivered: bool,
    attempts_before: int,
    processed_at: datetime | None,
) -> Result:
    """Write a failed attempt on ``event``'s row, in a transaction of its own.

    The attempt's own writes were rolled back, the row with them if this was its first
    delivery. The stored row counts the attempt (and the delivery); it is marked failed
    with ``error`` unless another attempt, one that began after this one, succeeded
    meanwhile (the row then has more attempts than this one saw, and is processed). A row
    that does not exist (the first delivery's, or one deleted meanwhile) is inserted as
    failed. A row locked by an attempt running right now is left to that attempt, and so
    is an event id another delivery has claimed (PostgreSQL).
    """
    # No text column of PostgreSQL can hold U+0000, and a traceback may quote payload text.
    error = error.replace("\x00", "\ufffd")
    event.status, event.error, event.processed_at = Status.FAILED, error, processed_at
    for _ in range(2):
        try:
            with transaction.atomic(using=using):
                row = lock_event(using, event.event_id)
                if row is not None:
                    row.attempts += 1
                    if delivered:
                        row.deliveries += 1
                        row.last_received_at = event.last_received_at
                    if row.status != Status.PROCESSED or row.attempts - 1 <= attempts_before:
                        row.status, row.error = Status.FAILED, error
                    row.save(
                        update_fields=[
                            "status",
                            "error",
                            "attempts",
                            "deliveries",
                            "last_received_at",
                        ],
                        using=using,
                    )
                    return Result(Outcome.FAILED, event.event_id, row)
        except EventLocked:
            # Another attempt is running on the row: it records its own outcome.
            return Result(Outcome.FAILED, event.event_id)
        failed = Event(
            **{
                field.attname: getattr(event, field.attname)
                for field in Event._meta.concrete_fields
                if not field.primary_key
            }
        )
        try:
            with transaction.atomic(using=using):
                if not claim(using, event.event_id):
                    # Another delivery of the event holds its claim: it has inserted the
                    # row, uncommitted, and runs its handlers (an INSERT here would wait
                    # for them). It records its own outcome.
                    logger.warning(
                        "Klarefi event %s: its failure is not recorded, as another delivery "
                        "of it is being processed; that one records its own outcome.",
                        event.event_id,
                    )
                    return Result(Outcome.FAILED, event.event_id)
                failed.save(force_insert=True, using=using)
        except IntegrityError:
            continue  # stored meanwhile by a concurrent delivery: count it on that row
        return Result(Outcome.FAILED, event.event_id, failed)
    return Result(Outcome.FAILED, event.event_id)
