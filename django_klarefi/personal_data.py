"""Personal data in stored events: the one place that knows what erasing an event writes.

An event's ``payload`` carries the data Klarefi extracted from people's documents (names,
dates of birth, incomes, document numbers), and its ``error`` (a traceback) can quote
it. Erasing an event keeps its row, so that a redelivery is still recognised and never
run again, and reduces it to what identifies it:

* ``payload``: its envelope, :data:`ENVELOPE_KEYS` (id, type, case and session ids, the
  test marker), never ``data`` or any other key;
* ``error``: the exception's class only (:func:`error_class`), no message, no traceback;
* ``payload_erased_at``: when.

:func:`erased_values` gives those column values for one event; :func:`erase_events`
erases every event of a queryset in short batches (the ``klarefi_erase`` command, the
admin action, the API endpoint and the retention in ``klarefi_prune_events`` all call it)
and records each erasure without the erased data.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import Field, QuerySet
from django.utils import timezone

from django_klarefi.models import EVENT_ID_MAX_LENGTH, TEST_EVENT_KEY, Event
from django_klarefi.signals import event_erased

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ENVELOPE_KEYS",
    "ERASED_OUTCOME",
    "ErasureStopped",
    "Reason",
    "envelope",
    "erase_events",
    "erased_values",
    "error_class",
    "redacted_traceback",
]

logger = logging.getLogger("django_klarefi")

#: The payload keys an erased event keeps: what identifies the event, nothing extracted.
ENVELOPE_KEYS = ("id", "event", "case_id", "session_id", TEST_EVENT_KEY)

#: The outcome ``process_event()`` answers for an erased event, which it never runs:
#: ``Outcome.ERASED``'s value.
ERASED_OUTCOME = "erased"

#: Events erased per transaction by :func:`erase_events`.
DEFAULT_BATCH_SIZE = 1000

#: The columns an erasure writes.
ERASED_FIELDS = ("payload", "error", "payload_erased_at")

# The columns an erasure reads: the envelope for the event_erased receivers, and the two
# it rewrites.
_LOADED_FIELDS = (
    *("pk", "event_id", "event_type", "case_id", "session_id", "status", "is_test"),
    "received_at",
)

# An exception's line: a dotted name, then ":" and its message or the end of the line.
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.<>]*)(?::|$)")


class Reason:
    """Why events are erased, as :data:`~django_klarefi.signals.event_erased` says."""

    #: Someone asked: ``klarefi_erase``, the admin action, the API endpoint.
    REQUEST = "request"
    #: ``KLAREFI_PAYLOAD_RETENTION`` expired (``klarefi_prune_events``).
    RETENTION = "retention"


class ErasureStopped(Exception):
    """An erasure stopped part way (a database error, or an ``event_erased`` receiver
    raised). The batches before it are committed and recorded; the failing one is not."""

    def __init__(self, erased: int, cause: BaseException) -> None:
        self.erased = erased
        self.cause = cause
        super().__init__(
            f"The erasure stopped after {erased} events: {type(cause).__name__}. "
            "Run it again to erase the rest."
        )


def envelope(payload: Any) -> dict[str, Any]:
    """What an erased event's payload keeps: the :data:`ENVELOPE_KEYS` the payload has,
    when each is a plain id-like value (a short string, a number, a boolean)."""
    if not isinstance(payload, dict):
        return {}
    kept = {}
    for key in ENVELOPE_KEYS:
        value = payload.get(key)
        if isinstance(value, bool | int | float) or (
            isinstance(value, str) and len(value) <= EVENT_ID_MAX_LENGTH
        ):
            kept[key] = value
    return kept


def error_class(error: str) -> str:
    """The exception's class named by a stored ``error`` (``"ValueError"``,
    ``"myproject.errors.Refused"``), without its message; "" when none can be told.

    The class is the first unindented line after the last traceback's frames. Shown to
    users without ``view_event_payload``, and all that an erased event keeps.
    """
    if not error:
        return ""
    lines = error.splitlines()
    start = 0
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            start = index + 1
    for line in lines[start:]:
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line)
            return match[1] if match else ""
    return ""


def redacted_traceback(exc: BaseException) -> str:
    """``exc``'s traceback for a log line: every frame (file, line, function and source
    line), and each exception of the chain by its class only, ``(message hidden)``.

    An exception's message can quote the payload (``ValueError(event.payload["data"]
    ["name"])``): logs carry ids, types and references only. The message is never
    formatted, so an exception whose ``__str__`` raises is logged too.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts = []
    for error in reversed(chain):
        frames = traceback.format_list(traceback.extract_tb(error.__traceback__))
        kind = type(error)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        parts.append(
            "Traceback (most recent call last):\n"
            + "".join(frames)
            + f"{name}: (message hidden: it can quote personal data)\n"
        )
    return "\nThe above exception led to the following one:\n\n".join(parts)


def erased_values(payload: Any, now: datetime, error: str = "") -> dict[str, Any]:
    """The columns of an erased event, column name -> value: the payload's envelope, the
    error's class only, and ``payload_erased_at = now``.

    The one definition of an erased row: :func:`erase_events` writes it, and so does a
    successful attempt under ``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``, in the same
    UPDATE that marks the event processed.
    """
    return {
        "payload": envelope(payload),
        "error": error_class(error),
        "payload_erased_at": now,
    }


def erase_events(
    events: QuerySet[Event],
    *,
    actor: Any,
    filter_description: str,
    reason: str = Reason.REQUEST,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[Sequence[Event]], None] | None = None,
    by_received_at: bool = False,
) -> int:
    """Erase every event of ``events`` not erased yet, in any status; the count erased.

    Batches of ``batch_size`` events in primary-key order (``by_received_at``: oldest
    first, each batch starting at the last one's ``received_at``, for a queryset that the
    ``(status, received_at)`` index serves, as the retention's), each one short transaction:
    the batch's rows are locked (``FOR NO KEY UPDATE``; an attempt running on one is
    waited for), rewritten with :func:`erased_values`, and
    :data:`~django_klarefi.signals.event_erased` is sent for each, inside the
    transaction, so that a receiver's own erasure commits with it. Memory holds one
    batch. ``progress(events)`` is called after each committed batch with its events (their
    envelopes).

    ``actor`` is who asks: a user (recorded in the admin's ``LogEntry`` too) or a text such
    as ``"manage.py klarefi_erase"``. ``filter_description`` says which events, by
    references only (``"case_id=case_123"``). The record, a log line and the ``LogEntry``,
    never holds erased data. On a failure, the batches before it stay erased and recorded,
    and :class:`ErasureStopped` is raised.
    """
    using = router.db_for_write(Event)
    pending = events.using(using).filter(payload_erased_at__isnull=True)
    erased, last = 0, None
    try:
        while True:
            batch = _erase_batch(
                _after(pending, last, by_received_at), using, batch_size, actor=actor, reason=reason
            )
            erased += len(batch)
            if batch and progress is not None:
                progress(batch)
            if len(batch) < batch_size:
                break
            last = batch[-1]
    except Exception as exc:
        _record(actor, erased, filter_description, reason, stopped=exc)
        raise ErasureStopped(erased, exc) from exc
    _record(actor, erased, filter_description, reason)
    return erased


def _after(pending: QuerySet[Event], last: Event | None, by_received_at: bool) -> QuerySet[Event]:
    """The events not erased yet from ``last`` on, in the walk's order (keyset pagination:
    each batch's scan starts where the one before ended). By ``received_at`` the floor
    includes ties; the rows erased there are left out by ``payload_erased_at``."""
    if by_received_at:
        events = pending.order_by("received_at")
        return events if last is None else events.filter(received_at__gte=last.received_at)
    events = pending.order_by("pk")
    return events if last is None else events.filter(pk__gt=last.pk)


def _erase_batch(
    pending: QuerySet[Event], using: str, batch_size: int, *, actor: Any, reason: str
) -> list[Event]:
    """Erase the first ``batch_size`` events of ``pending``, in one transaction; the events
    erased."""
    batch = pending.only(*_LOADED_FIELDS, "payload", "error")
    connection = connections[using]
    with transaction.atomic(using=using):
        if connection.features.has_select_for_update:
            no_key = connection.features.has_select_for_no_key_update
            rows = list(batch.select_for_update(no_key=no_key)[:batch_size])
        else:
            # SQLite has no row locks: write first, so that this transaction holds the
            # database's write lock before it reads (the UPDATE matches no row).
            Event.objects.using(using).filter(pk=-1).update(payload_erased_at=None)
            rows = list(batch[:batch_size])
        if not rows:
            return rows
        now = timezone.now()
        for event in rows:
            for column, value in erased_values(event.payload, now, event.error).items():
                setattr(event, column, value)
        _write_erased(rows, using)
        for event in rows:
            event_erased.send(sender=Event, event=event, reason=reason, actor=actor)
    return rows


def _write_erased(rows: list[Event], using: str) -> None:
    """Write each row's :data:`ERASED_FIELDS`, values prepared by their model fields: on
    PostgreSQL one ``UPDATE ... FROM (VALUES ...)``, elsewhere one ``executemany`` of an
    ``UPDATE ... WHERE id = %s``. (``bulk_update``'s ``CASE`` expressions cost Django
    about a millisecond per row to build.)"""
    connection = connections[using]
    quote = connection.ops.quote_name
    key = cast("Field[Any, Any]", Event._meta.get_field("id"))
    fields = [cast("Field[Any, Any]", Event._meta.get_field(name)) for name in ERASED_FIELDS]
    table = quote(Event._meta.db_table)
    values = [
        [key.get_db_prep_save(event.pk, connection)]
        + [field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields]
        for event in rows
    ]
    names = [quote(field.column or field.name) for field in (key, *fields)]
    # Names quoted from the model's own metadata; every value is a parameter.
    if connection.vendor == "postgresql":
        row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in (key, *fields)) + ")"
        assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
        sql = (
            f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * len(rows))}) "  # noqa: S608
            f"AS v({', '.join(names)}) WHERE {table}.{names[0]} = v.{names[0]}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row_values in values for value in row_values])
        return
    assignments = ", ".join(f"{name} = %s" for name in names[1:])
    sql = f"UPDATE {table} SET {assignments} WHERE {names[0]} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[*row_values[1:], row_values[0]] for row_values in values])


def _record(
    actor: Any, count: int, filter_description: str, reason: str, stopped: Exception | None = None
) -> None:
    """The erasure's record: who, which filter, how many (and when: the record's time).
    A log line always; a ``LogEntry`` too when a user asked and the admin is installed."""
    who = _actor_text(actor)
    if stopped is None:
        logger.info(
            "Klarefi erasure (%s) by %s: erased the payload data of %d events matching %s.",
            reason,
            who,
            count,
            filter_description,
        )
    else:
        # The exception's class only: its message may quote what was being erased.
        logger.error(
            "Klarefi erasure (%s) by %s stopped by %s after erasing the payload data of %d "
            "events matching %s; run it again to erase the rest.",
            reason,
            who,
            type(stopped).__name__,
            count,
            filter_description,
        )
    user_id = getattr(actor, "pk", None)
    if user_id is not None and count and apps.is_installed("django.contrib.admin"):
        _log_entry(user_id, count, filter_description, reason)


def _log_entry(user_id: Any, count: int, filter_description: str, reason: str) -> None:
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    text = f"Erased the payload data of {count} events matching {filter_description} ({reason})."
    LogEntry.objects.create(
        user_id=user_id,
        content_type=ContentType.objects.get_for_model(Event),
        object_repr=text[:200],
        action_flag=CHANGE,
        change_message=text,
    )


def _actor_text(actor: Any) -> str:
    if getattr(actor, "pk", None) is not None:
        return f"user {actor.get_username()} (id {actor.pk})"
    return str(actor)
