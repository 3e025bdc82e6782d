"""Signals sent for each processed Klarefi event.

For every event, the per-type signal (if the type is documented) is sent first, then the
catch-all :data:`event_received`. Receivers get ``sender=Event`` and ``event=<Event>``,
whichever path runs them (first delivery, redelivery, admin, API, ``klarefi_reprocess``,
the task): ``event.status`` is ``"processed"``, ``event.error`` is empty,
``event.processed_at`` is this attempt's start and ``event.attempts`` counts this attempt
(1 on the first delivery). That is the row as it commits if every receiver succeeds.
``event.payload`` is the payload exactly as signed, and ``event.is_test`` tells a test
event built by django-klarefi.

Receivers run inside the attempt's database transaction: an exception, or a failure of
their writes at COMMIT (a deferred foreign key), rolls back every receiver's writes,
stops the remaining receivers, and marks the event failed with the traceback, to be run
again by Klarefi's retry, the admin or ``klarefi_reprocess``. Work that must happen only
once the event is committed goes in ``transaction.on_commit``: pass ``robust=True``, so
that a failing callback is only logged. An exception from a callback registered without it
is logged too and does not fail the event, but, as Django runs callbacks, it stops the
callbacks registered after it. A receiver that catches a database error must do so around
an ``atomic()`` block of its own: otherwise the event cannot commit, and is failed.
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

# What goes wrong (docs/signals.md, "When something goes wrong"). Both are sent robustly: a
# receiver that raises is logged, and changes neither the answer nor the recorded outcome.
__all__ += ["event_failed", "webhook_rejected"]

#: Sent for every delivery answered 4xx or 503 before anything is stored, by the receiver,
#: the DRF API view and the DRF authentication class alike, with ``sender`` the view or
#: class, ``reason`` (the JSON ``error``), ``status`` (the HTTP status code), ``endpoint``
#: (its name, or None when not known), ``client`` (the remote address) and ``detail`` (the
#: JSON ``detail``). Never the body, a header or a secret. See
#: :func:`django_klarefi.rejections.report_rejection`.
webhook_rejected = Signal()

#: Sent after a failed attempt is recorded, outside the attempt's rolled-back transaction,
#: whichever path ran it, with ``sender=Event``, ``event`` (the row as recorded),
#: ``exception`` and ``retries_exhausted`` (True when Klarefi will not deliver the event
#: again). See :func:`django_klarefi.failures.report_failure`.
event_failed = Signal()
# Personal data (django_klarefi.personal_data).

#: Sent for each event whose payload data was erased, inside the erasure's transaction:
#: ``sender=Event``, ``event=<Event>`` (its envelope only, ``payload_erased_at`` set),
#: ``reason`` (``"request"``: ``klarefi_erase``, the admin action or the API;
#: ``"retention"``: ``KLAREFI_PAYLOAD_RETENTION``) and ``actor`` (the user, or a text
#: naming the command). Connect a receiver to erase your own tables' copy of the data; an
#: exception stops the erasure and rolls back its batch (see docs/personal-data.md).
event_erased = Signal()
__all__ += ["event_erased"]
