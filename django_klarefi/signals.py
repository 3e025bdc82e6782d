"""Signals sent for each processed Klarefi event.

For every event, the per-type signal (if the type is documented) is sent first, then the
catch-all :data:`event_received`. Receivers get ``sender=Event`` and ``event=<Event>``.
They run inside the event's database transaction: an exception propagates, rolls back
every receiver's writes, stops the remaining receivers, and marks the event failed.
"""

from __future__ import annotations

from django.dispatch import Signal

from django_klarefi.event_types import EVENT_TYPES

__all__ = [
    "EVENT_SIGNALS",
    "case_completed",
    "document_processed",
    "document_uploaded",
    "event_received",
    "session_complete",
    "session_created",
    "session_expired",
    "session_submitted_incomplete",
    "skill_needs_review",
    "skill_resolved",
]

#: Sent for every processed event, documented type or not, after the per-type signal.
event_received = Signal()

#: Event type string -> its signal, one per entry of ``EVENT_TYPES``.
EVENT_SIGNALS: dict[str, Signal] = {event_type: Signal() for event_type in EVENT_TYPES}

session_created = EVENT_SIGNALS["session.created"]
document_uploaded = EVENT_SIGNALS["document.uploaded"]
document_processed = EVENT_SIGNALS["document.processed"]
skill_resolved = EVENT_SIGNALS["skill.resolved"]
skill_needs_review = EVENT_SIGNALS["skill.needs_review"]
session_complete = EVENT_SIGNALS["session.complete"]
session_submitted_incomplete = EVENT_SIGNALS["session.submitted_incomplete"]
session_expired = EVENT_SIGNALS["session.expired"]
case_completed = EVENT_SIGNALS["case.completed"]
