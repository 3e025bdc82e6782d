"""Realistic sample payloads for every documented Klarefi event type.

Used by ``manage.py klarefi_send_test_event`` and the admin's "Send test event" page::

    >>> from django_klarefi.samples import sample_event
    >>> event = sample_event("document.processed", case_id="case_123")
    >>> event["event"], event["case_id"], sorted(event["data"])[:3]
    ('document.processed', 'case_123', ['confidence', 'document_id', 'document_type'])
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django_klarefi.event_types import EVENT_TYPES, TEST_EVENT_KEY

__all__ = ["SAMPLE_EVENT_TYPES", "sample_event"]

# The types with a realistic sample: exactly the documented ones, in their documented order.
SAMPLE_EVENT_TYPES: tuple[str, ...] = tuple(EVENT_TYPES)


def sample_event(
    event_type: str,
    *,
    case_id: str | None = None,
    session_id: str | None = None,
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A realistic payload for ``event_type``.

    It is marked as a test event (``"django_klarefi_test": true``, stored as
    ``Event.is_test``). It has a unique ``id`` (``evt_test_<hex>`` unless ``event_id``
    is given), ``event``,
    ``created_at`` (ISO 8601, UTC), ``case_id`` and ``session_id`` (plausible generated ids
    unless given), and ``data`` plausible for the type, with ``data`` merged on top
    (top-level keys replaced). Types that are not documented get generic ``data``.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    case = case_id if case_id is not None else f"case_{secrets.token_hex(8)}"
    session = session_id if session_id is not None else f"sess_{secrets.token_hex(8)}"
    build = _DATA.get(event_type, _generic)
    sample_data = build(_Context(now=now, case_id=case, session_id=session))
    if data:
        sample_data.update(copy.deepcopy(data))
    return {
        "id": event_id if event_id is not None else f"evt_test_{secrets.token_hex(12)}",
        "event": event_type,
        "created_at": _iso(now),
        "case_id": case,
        "session_id": session,
        "data": sample_data,
        # Marks the event as a test for the receiver (Event.is_test) and its handlers.
        TEST_EVENT_KEY: True,
    }


class _Context:
    def __init__(self, *, now: datetime, case_id: str, session_id: str) -> None:
        self.now = now
        self.case_id = case_id
        self.session_id = session_id


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _document_id() -> str:
    return f"doc_{secrets.token_hex(8)}"


def _skill_id() -> str:
    return f"skl_{secrets.token_hex(6)}"


def _session_created(ctx: _Context) -> dict[str, Any]:
    return {
        "session_id": ctx.session_id,
        "status": "open",
        "template": "mortgage_application",
        "required_skills": ["proof_of_income", "proof_of_address", "identity"],
        "expires_at": _iso(ctx.now + timedelta(days=7)),
        "metadata": {"source": "test_event", "customer_reference": "CUST-10482"},
    }


def _document_uploaded(ctx: _Context) -> dict[str, Any]:
    return {
        "document_id": _document_id(),
        "session_id": ctx.session_id,
        "filename": "payslip_2026_10.pdf",
        "content_type": "application/pdf",
        "size_bytes": 184_322,
        "pages": 2,
        "uploaded_at": _iso(ctx.now),
    }


def _document_processed(ctx: _Context) -> dict[str, Any]:
    return {
        "document_id": _document_id(),
        "session_id": ctx.session_id,
        "document_type": "payslip",
        "status": "processed",
        "confidence": 0.97,
        "pages": 2,
        "extracted_fields": {
            "employer_name": "Acme Logistics GmbH",
            "employee_name": "Jane Doe",
            "pay_period": "2026-10",
            "gross_pay": {"amount": "4850.00", "currency": "EUR"},
            "net_pay": {"amount": "3124.55", "currency": "EUR"},
        },
        "processed_at": _iso(ctx.now),
    }


def _skill_resolved(ctx: _Context) -> dict[str, Any]:
    return {
        "skill_id": _skill_id(),
        "skill": "proof_of_income",
        "decision": "accepted",
        "confidence": 0.94,
        "value": {"monthly_net_income": {"amount": "3124.55", "currency": "EUR"}},
        "evidence": [{"document_id": _document_id(), "page": 1}],
        "resolved_at": _iso(ctx.now),
    }


def _skill_needs_review(ctx: _Context) -> dict[str, Any]:
    return {
        "skill_id": _skill_id(),
        "skill": "proof_of_address",
        "reason": "low_confidence",
        "confidence": 0.58,
        "candidates": [
            {"value": "12 Elm Street, 10115 Berlin", "confidence": 0.58},
            {"value": "12 Elm Str., 10117 Berlin", "confidence": 0.31},
        ],
        "evidence": [{"document_id": _document_id(), "page": 1}],
        "review_url": f"https://app.klarefi.com/sessions/{ctx.session_id}/review",
    }


def _session_complete(ctx: _Context) -> dict[str, Any]:
    return {
        "session_id": ctx.session_id,
        "status": "complete",
        "skills": {
            "proof_of_income": {"decision": "accepted", "confidence": 0.94},
            "proof_of_address": {"decision": "accepted", "confidence": 0.91},
            "identity": {"decision": "accepted", "confidence": 0.99},
        },
        "documents_count": 4,
        "completed_at": _iso(ctx.now),
    }


def _session_submitted_incomplete(ctx: _Context) -> dict[str, Any]:
    return {
        "session_id": ctx.session_id,
        "status": "submitted_incomplete",
        "resolved_skills": ["proof_of_income", "identity"],
        "unresolved_skills": ["proof_of_address"],
        "documents_count": 3,
        "submitted_at": _iso(ctx.now),
    }


def _session_expired(ctx: _Context) -> dict[str, Any]:
    return {
        "session_id": ctx.session_id,
        "status": "expired",
        "ttl_seconds": 604_800,
        "created_at": _iso(ctx.now - timedelta(days=7)),
        "expired_at": _iso(ctx.now),
        "unresolved_skills": ["proof_of_address", "identity"],
    }


def _case_completed(ctx: _Context) -> dict[str, Any]:
    return {
        "case_id": ctx.case_id,
        "status": "completed",
        "outcome": "approved",
        "sessions": [ctx.session_id],
        "results": {
            "proof_of_income": {"monthly_net_income": {"amount": "3124.55", "currency": "EUR"}},
            "proof_of_address": {"address": "12 Elm Street, 10115 Berlin"},
            "identity": {"full_name": "Jane Doe", "date_of_birth": "1988-04-12"},
        },
        "completed_at": _iso(ctx.now),
    }


def _generic(ctx: _Context) -> dict[str, Any]:
    return {"object": "test_event", "description": "A test event of an undocumented type."}


_DATA: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "session.created": _session_created,
    "document.uploaded": _document_uploaded,
    "document.processed": _document_processed,
    "skill.resolved": _skill_resolved,
    "skill.needs_review": _skill_needs_review,
    "session.complete": _session_complete,
    "session.submitted_incomplete": _session_submitted_incomplete,
    "session.expired": _session_expired,
    "case.completed": _case_completed,
}
