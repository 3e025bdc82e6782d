"""What makes a verified payload storable as an :class:`~django_klarefi.models.Event` row.

The signature proves who sent a payload, not that it fits the table. This module turns a
verified payload into the row's columns, or refuses it with :class:`InvalidEvent` (400):

* ``event`` is the type; longer than the column allows is refused.
* ``id`` is the event id when it is a usable reference (a string or integer that fits the
  column, with no U+0000); otherwise ``sha256:<hex digest of the exact body>``, so that a
  redelivery of the same body is still recognised.
* ``case_id`` and ``session_id`` are kept when usable, blank otherwise.
* A payload nested deeper than :data:`MAX_PAYLOAD_DEPTH` levels is refused.

U+0000 (a JSON ``\\u0000``) is valid JSON and occurs in extracted document text. No
PostgreSQL text column can hold it, so the type column stores it as U+FFFD; the payload
column keeps the payload exactly (see :class:`~django_klarefi.models.PayloadField`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from django_klarefi.models import (
    EVENT_ID_MAX_LENGTH,
    EVENT_TYPE_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    TEST_EVENT_KEY,
)

__all__ = ["MAX_PAYLOAD_DEPTH", "InvalidEvent", "event_fields"]

#: Deeper payloads are refused (400): Python's JSON parser accepts nesting up to its
#: recursion limit, but storing such a payload (and handler code walking it) recurses
#: deeper than parsing did, and would fail with RecursionError.
MAX_PAYLOAD_DEPTH = 100


class InvalidEvent(ValueError):
    """A verified payload that cannot be stored as an event."""


def event_fields(payload: dict[str, Any], raw_body: bytes, signed_at: int) -> dict[str, Any]:
    """The Event columns of a verified payload (those that depend on the payload alone)."""
    event_type = payload["event"]
    if len(event_type) > EVENT_TYPE_MAX_LENGTH:
        raise InvalidEvent(f"The event type is longer than {EVENT_TYPE_MAX_LENGTH} characters.")
    if _too_deep(payload, raw_body):
        raise InvalidEvent(f"The payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep.")
    event_id = _reference(payload.get("id"), EVENT_ID_MAX_LENGTH)
    if not event_id:
        event_id = "sha256:" + hashlib.sha256(raw_body).hexdigest()
    return {
        "event_id": event_id,
        "event_type": event_type.replace("\x00", "\ufffd"),
        "case_id": _reference(payload.get("case_id"), REFERENCE_MAX_LENGTH),
        "session_id": _reference(payload.get("session_id"), REFERENCE_MAX_LENGTH),
        "payload": payload,
        "signed_at": _datetime(signed_at),
        "is_test": payload.get(TEST_EVENT_KEY) is True,
    }


def _too_deep(payload: dict[str, Any], raw_body: bytes) -> bool:
    # Cheap first: a body with few brackets cannot be deep. Then an iterative walk, as
    # a recursive one would hit the very limit it checks for.
    if raw_body.count(b"{") + raw_body.count(b"[") <= MAX_PAYLOAD_DEPTH:
        return False
    level: list[Any] = [payload]
    for _ in range(MAX_PAYLOAD_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _reference(value: object, max_length: int) -> str:
    """An id-like payload value as text, or "" when it is absent or unusable."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and len(value) <= max_length and "\x00" not in value:
        return value
    return ""


def _datetime(timestamp: int) -> datetime | None:
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if settings.USE_TZ else timezone.make_naive(moment)
