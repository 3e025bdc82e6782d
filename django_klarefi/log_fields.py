"""The facts a django-klarefi log record carries as ``extra`` attributes, named in one place.

Every record about a delivery or an event passes ``extra=log_extra(...)``, so that a JSON
formatter (python-json-logger, structlog) gets the facts as fields, with no parsing of the
message::

    logger.warning("...", extra=log_extra(event_id=event.event_id, attempt=event.attempts))

Only the facts given are set: a record has no ``klarefi_outcome`` attribute when it is not
about an answered delivery. The names and their meaning are in docs/operating.md.
"""

from __future__ import annotations

from typing import Any

from django_klarefi.endpoint_settings import DEFAULT_ENDPOINT
from django_klarefi.models import Event

__all__ = [
    "DEFAULT_ENDPOINT",
    "EXTRA_KEYS",
    "endpoint_of",
    "event_extra",
    "log_extra",
]

#: Every ``extra`` key django-klarefi sets, in the order :func:`log_extra` takes them.
EXTRA_KEYS = (
    "klarefi_event_id",
    "klarefi_event_type",
    "klarefi_endpoint",
    "klarefi_outcome",
    "klarefi_reason",
    "klarefi_attempt",
    "klarefi_client",
    "klarefi_summarised",
)


def log_extra(
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    endpoint: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    attempt: int | None = None,
    client: str | None = None,
    summarised: int | None = None,
) -> dict[str, Any]:
    """The ``extra`` mapping of a log record, with the facts that are not None.

    ``outcome`` is the answered JSON ``status`` (``processed``, ``failed``, ...),
    ``reason`` a rejection's JSON ``error``, ``attempt`` the attempt's number (the event's
    ``attempts`` once it ran), ``client`` a rejected delivery's remote address, and
    ``summarised`` how many rejections like it were left unlogged since the last record.
    """
    values = (event_id, event_type, endpoint, outcome, reason, attempt, client, summarised)
    # str(): an Outcome (a StrEnum) becomes its plain word, as the answer's JSON has it.
    return {
        key: str(value) if isinstance(value, str) else value
        for key, value in zip(EXTRA_KEYS, values, strict=True)
        if value is not None
    }


def endpoint_of(event: Event) -> str:
    """The name of the endpoint ``event`` came in on (:data:`DEFAULT_ENDPOINT` for a row
    written before events recorded it, or with a blank one)."""
    return event.endpoint or DEFAULT_ENDPOINT


def event_extra(event: Event, **facts: Any) -> dict[str, Any]:
    """:func:`log_extra` for a stored event: its id, type and endpoint, and ``facts``."""
    return log_extra(
        event_id=event.event_id,
        event_type=event.event_type,
        endpoint=endpoint_of(event),
        **facts,
    )
