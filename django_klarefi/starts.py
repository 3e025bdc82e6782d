"""Where an attempt starts: a first delivery to insert, or a stored event to lock.

:class:`FirstDelivery` and :class:`StoredEvent` are what ``processing`` hands to
:func:`~django_klarefi.attempts.run_attempt`; :class:`Conflict` is what a first delivery's
INSERT can find instead of a row of its own. :func:`enqueue_event` queues a stored event's
processing in task mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import IntegrityError

from django_klarefi.log_fields import event_extra
from django_klarefi.models import Event
from django_klarefi.outcomes import EnqueueFailed, Outcome
from django_klarefi.payloads import event_fields
from django_klarefi.records import safe_text
from django_klarefi.signature import parse_payload

__all__ = ["Conflict", "Enqueue", "FirstDelivery", "StoredEvent", "enqueue_event"]

logger = logging.getLogger("django_klarefi")

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
