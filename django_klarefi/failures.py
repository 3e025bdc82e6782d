"""What happens once a failed attempt is recorded: the ``event_failed`` signal and the
failures metric.

The processing path calls :func:`report_failure` after the failure record has committed,
outside the attempt's rolled-back transaction, whichever path ran the attempt. It never
raises, and nothing it calls changes the recorded outcome.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError

from django_klarefi import metrics
from django_klarefi.log_fields import endpoint_of, event_extra
from django_klarefi.models import Event
from django_klarefi.redelivery import redelivery
from django_klarefi.signal_sending import send_robustly
from django_klarefi.signals import event_failed

__all__ = ["report_failure", "report_recorded_failure"]

logger = logging.getLogger("django_klarefi.signals")


def report_failure(
    event: Event,
    exception: BaseException,
    *,
    retries_exhausted: bool | None = None,
    now: datetime | None = None,
) -> bool:
    """Report a failed attempt at ``event`` (the row as recorded: status ``failed``, its
    ``attempts`` and ``deliveries`` counting this attempt) that raised ``exception``.

    Sends ``event_failed`` robustly and counts ``klarefi_events_failed_total``.
    ``retries_exhausted`` is decided from Klarefi's retry schedule
    (:func:`django_klarefi.redelivery.redelivery`) unless given. Returns it. Never raises.
    """
    endpoint = endpoint_of(event)
    if retries_exhausted is None:
        try:
            retries_exhausted = redelivery(event, now=now).exhausted
        except Exception:  # a row without received_at, say: report it as over, to be safe
            logger.exception("Could not tell whether Klarefi delivers event %s again.", event.pk)
            retries_exhausted = True
    send_robustly(
        event_failed,
        "event_failed",
        Event,
        event_extra(event, attempt=event.attempts),
        event=event,
        exception=exception,
        retries_exhausted=retries_exhausted,
    )
    try:
        metrics.count_failure(endpoint, event.event_type)
    except Exception:
        logger.exception("Could not count a failed Klarefi event.")
    return retries_exhausted


def report_recorded_failure(using: str, event_id: str, exception: BaseException) -> bool | None:
    """:func:`report_failure` for the processing path, which holds the attempt's record
    rather than the row: once the failure record has committed, read the row as recorded
    (one query, on failures only) and report it. Returns ``retries_exhausted``, or None
    when the row could not be read (deleted meanwhile, or the database is gone; logged).
    Never raises."""
    try:
        event = Event.objects.using(using).filter(event_id=event_id).first()
    except DatabaseError:
        logger.exception(
            "Klarefi event %s failed, but event_failed is not sent: its row could not be read.",
            event_id,
        )
        return None
    if event is None:
        return None
    return report_failure(event, exception)
