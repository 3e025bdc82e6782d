"""Klarefi's retry schedule: will Klarefi deliver a failed event again, and about when?

Klarefi retries a delivery it did not get a 2xx for 1 minute, 5 minutes, 30 minutes and
2 hours after the attempt before: 5 attempts in all, the last one 2 h 36 min after the
first. After that only a reprocess here runs the event.

The row does not say when Klarefi made each attempt, only ``deliveries`` (the deliveries
that reached this server and were recorded) and ``received_at`` (the first of them). So
this is an estimate, in the ways the docs spell out (docs/operating.md, "Klarefi's
retries"):

* ``received_at`` is taken as Klarefi's first attempt. When earlier attempts never
  reached the server (it was down, or answered 503 or 409, which are not recorded), the
  real schedule started earlier: the next delivery is expected later than it comes, and the
  retries are over sooner than said here, never later.
* A scheduled attempt that is past by more than :data:`GRACE` without a recorded
  delivery is taken as lost, and the next one after it is expected instead.
* In task mode (``KLAREFI_PROCESSING = "task"``) every delivery is answered 200
  (``queued``) before the handlers run, so Klarefi never retries a failed event:
  :func:`redelivery` says its retries are over at once. The same holds, in sync mode, for
  an event answered 200 and failed later by a reprocess; the row cannot tell that apart.
* A delivery sent again by hand from Klarefi's dashboard is outside the schedule.

Used by the ``event_failed`` signal, ``klarefi_status`` and the admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from django_klarefi.conf import conf
from django_klarefi.models import Event

__all__ = [
    "ATTEMPTS",
    "GRACE",
    "RETRY_DELAYS",
    "Redelivery",
    "next_delivery_expected",
    "redelivery",
    "retries_exhausted",
    "retries_exhausted_q",
    "schedule_end",
]

#: The wait before each retry, after the attempt before it.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
)

#: Klarefi's attempts in all: the first delivery and its retries.
ATTEMPTS = 1 + len(RETRY_DELAYS)

#: How late a scheduled attempt may come (Klarefi's queue, the network) before it is taken
#: as lost.
GRACE = timedelta(minutes=10)


def _offsets() -> tuple[timedelta, ...]:
    offsets, total = [timedelta(0)], timedelta(0)
    for delay in RETRY_DELAYS:
        total += delay
        offsets.append(total)
    return tuple(offsets)


#: When each attempt comes, after the first: 0, 1 min, 6 min, 36 min, 2 h 36 min.
ATTEMPT_OFFSETS = _offsets()


def schedule_end(received_at: datetime) -> datetime:
    """The moment after which no scheduled attempt can still come: the last attempt's time,
    counted from ``received_at``, plus :data:`GRACE`."""
    return received_at + ATTEMPT_OFFSETS[-1] + GRACE


def next_delivery_expected(
    deliveries: int, received_at: datetime, now: datetime
) -> datetime | None:
    """About when Klarefi's next attempt comes, or None when its retries are over.

    The first attempt after the ``deliveries`` recorded ones whose time (counted from
    ``received_at``) is not past by more than :data:`GRACE` at ``now``.
    """
    for offset in ATTEMPT_OFFSETS[max(deliveries, 1) :]:
        expected = received_at + offset
        if expected + GRACE >= now:
            return expected
    return None


def retries_exhausted(deliveries: int, received_at: datetime, now: datetime) -> bool:
    """Whether Klarefi's schedule has no attempt left for an event delivered ``deliveries``
    times, first at ``received_at``: all 5 came, or the last one's time is past."""
    return next_delivery_expected(deliveries, received_at, now) is None


def retries_exhausted_q(now: datetime, *, processing: str | None = None) -> Q:
    """The rows :func:`retries_exhausted` says yes to, as a filter on ``Event``: the same
    decision, in SQL. In task mode (``processing``, default ``KLAREFI_PROCESSING``) every
    row, as :func:`redelivery` decides. Combine it with ``status="failed"``."""
    if (processing or conf.PROCESSING) == "task":
        return Q()
    last = now - ATTEMPT_OFFSETS[-1] - GRACE
    return Q(deliveries__gte=ATTEMPTS) | Q(received_at__lt=last)


@dataclass(frozen=True)
class Redelivery:
    """What Klarefi will do about a failed event."""

    #: Klarefi will not deliver it again: only a reprocess here runs it.
    exhausted: bool
    #: About when the next delivery comes; None when ``exhausted``.
    expected_at: datetime | None
    #: Why the retries are over: ``"attempts"`` (all made), ``"schedule"`` (its time is
    #: past), ``"answered"`` (task mode: every delivery was answered 200); "" when not over.
    reason: str
    #: Which of Klarefi's attempts (2 to 5) is expected next; None when ``exhausted``.
    attempt: int | None = None


def redelivery(event: Event, *, now: datetime | None = None) -> Redelivery:
    """Whether, and about when, Klarefi delivers ``event`` again (see the module's notes)."""
    if conf.PROCESSING == "task":
        return Redelivery(exhausted=True, expected_at=None, reason="answered")
    now = timezone.now() if now is None else now
    expected = next_delivery_expected(event.deliveries, event.received_at, now)
    if expected is not None:
        attempt = ATTEMPT_OFFSETS.index(expected - event.received_at) + 1
        return Redelivery(exhausted=False, expected_at=expected, reason="", attempt=attempt)
    reason = "attempts" if event.deliveries >= ATTEMPTS else "schedule"
    return Redelivery(exhausted=True, expected_at=None, reason=reason)
