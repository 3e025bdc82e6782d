"""What ``klarefi_status`` and the admin's "Needs attention" filter know: is anything
wrong with the events, per endpoint, read with a few index lookups.

Fast on a table of millions of rows: no query reads the whole table. Counts are exact up to
:attr:`~django_klarefi.paginator.EstimatedCountPaginator.estimate_from` rows and
PostgreSQL's estimate past that (as the admin's list counts); the oldest pending and
failed events come from the ``(status, received_at)`` index; the last delivery from the
``received_at`` index (see :func:`last_delivery`).

Events do not record their endpoint yet: every event is the ``default`` endpoint's. When
``Event`` has an ``endpoint`` field, :func:`for_endpoint` filters on it, and
:func:`endpoint_names` should list the configured endpoints' names (not a ``DISTINCT``
over the table, which reads all of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max, Q, QuerySet

from django_klarefi.log_fields import DEFAULT_ENDPOINT
from django_klarefi.models import Event
from django_klarefi.paginator import EstimatedCountPaginator
from django_klarefi.redelivery import ATTEMPT_OFFSETS, GRACE, retries_exhausted_q

__all__ = [
    "DEFAULT_MAX_PENDING_AGE",
    "EndpointHealth",
    "EventBrief",
    "endpoint_health",
    "endpoint_names",
    "for_endpoint",
    "last_delivery",
    "needs_attention_q",
]

Status = Event.Status

#: A pending event older than this needs a person (``--max-pending-age``; the admin filter).
DEFAULT_MAX_PENDING_AGE = timedelta(minutes=10)

#: The ``Event`` field that will name an event's endpoint.
ENDPOINT_FIELD = "endpoint"

#: How many failed events whose retries are over are listed by name.
LISTED = 10

#: How many of the latest events :func:`last_delivery` reads redeliveries from.
LATEST_EVENTS = 10_000

# Only what the report shows: never the payload or the traceback.
_BRIEF_FIELDS = ("event_id", "event_type", "received_at", "deliveries", "attempts")


@dataclass(frozen=True)
class EventBrief:
    """One event, as the report names it."""

    event_id: str
    event_type: str
    received_at: datetime
    deliveries: int
    attempts: int

    @classmethod
    def of(cls, event: Event) -> EventBrief:
        return cls(*(getattr(event, name) for name in _BRIEF_FIELDS))


@dataclass(frozen=True)
class Count:
    value: int
    #: PostgreSQL's estimate rather than an exact count.
    estimated: bool


@dataclass
class EndpointHealth:
    """The state of one endpoint's events at ``now``."""

    endpoint: str
    counts: dict[str, Count]
    oldest_pending: EventBrief | None
    oldest_failed: EventBrief | None
    last_delivery_at: datetime | None
    #: Failed events Klarefi will not deliver again (see :mod:`django_klarefi.redelivery`).
    retries_over: Count
    #: The latest of them, at most :data:`LISTED`.
    retries_over_events: list[EventBrief] = field(default_factory=list)


def endpoint_names() -> list[str]:
    """The endpoints to report on."""
    return [DEFAULT_ENDPOINT]


def for_endpoint(events: QuerySet[Event], endpoint: str) -> QuerySet[Event]:
    """``events`` of ``endpoint``: all of them while events do not record their endpoint."""
    if any(f.name == ENDPOINT_FIELD for f in Event._meta.get_fields()):
        return events.filter(Q((ENDPOINT_FIELD, endpoint)))
    return events


def needs_attention_q(now: datetime, max_pending_age: timedelta = DEFAULT_MAX_PENDING_AGE) -> Q:
    """Events that need a person: failed with Klarefi's retries over, or pending for longer
    than ``max_pending_age``."""
    failed = Q(status=Status.FAILED) & retries_exhausted_q(now)
    stuck = Q(status=Status.PENDING, received_at__lt=now - max_pending_age)
    return failed | stuck


def endpoint_health(endpoint: str, now: datetime) -> EndpointHealth:
    """The state of ``endpoint``'s events at ``now``. Raises ``DatabaseError`` when the
    database cannot be read."""
    events = for_endpoint(Event.objects.all(), endpoint)
    failed = events.filter(status=Status.FAILED)
    over = failed.filter(retries_exhausted_q(now)).order_by("-received_at")
    return EndpointHealth(
        endpoint=endpoint,
        counts={status: _count(events.filter(status=status)) for status in Status.values},
        oldest_pending=_oldest(events.filter(status=Status.PENDING)),
        oldest_failed=_oldest(failed),
        last_delivery_at=last_delivery(events),
        retries_over=_count(over),
        retries_over_events=[EventBrief.of(e) for e in over.only(*_BRIEF_FIELDS)[:LISTED]],
    )


def last_delivery(events: QuerySet[Event]) -> datetime | None:
    """When the latest delivery of ``events`` came: a new event or a redelivery.

    ``last_received_at`` has no index, so it is read from the latest events only: those
    received within Klarefi's retry schedule before the latest one (no scheduled retry of
    an older event can come later), and of those the :data:`LATEST_EVENTS` latest. A
    delivery sent again by hand from Klarefi's dashboard, of an event older than those, is
    not seen: an estimate, never later than the truth.
    """
    latest = events.aggregate(latest=Max("received_at"))["latest"]
    if latest is None:
        return None
    window = ATTEMPT_OFFSETS[-1] + GRACE
    recent = events.filter(received_at__gte=latest - window).order_by("-received_at")
    found = recent[:LATEST_EVENTS].aggregate(last=Max("last_received_at"))["last"]
    last: datetime = latest if found is None else max(latest, found)
    return last


def _count(events: QuerySet[Event]) -> Count:
    # Ordered as the (status, -received_at) index is, which serves the capped count.
    paginator = EstimatedCountPaginator(events.order_by("-received_at"), 1)
    return Count(paginator.count, paginator.count_is_estimate)


def _oldest(events: QuerySet[Event]) -> EventBrief | None:
    event = events.order_by("received_at").only(*_BRIEF_FIELDS).first()
    return EventBrief.of(event) if event is not None else None
