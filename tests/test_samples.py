"""The sample payloads behind klarefi_send_test_event and the admin's Send test event page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.samples import SAMPLE_EVENT_TYPES, sample_event
from django_klarefi.signature import sign_webhook_payload, verify_webhook_signature

# Fields a realistic payload of each type carries in its data (documents, skills, cases...).
REALISTIC_DATA_FIELDS: dict[str, set[str]] = {
    "session.created": {"session_id", "status", "required_skills", "expires_at"},
    "document.uploaded": {"document_id", "filename", "content_type", "size_bytes"},
    "document.processed": {"document_id", "document_type", "confidence", "extracted_fields"},
    "skill.resolved": {"skill_id", "skill", "decision", "confidence", "evidence"},
    "skill.needs_review": {"skill_id", "skill", "reason", "candidates", "evidence"},
    "session.complete": {"session_id", "status", "skills", "completed_at"},
    "session.submitted_incomplete": {"session_id", "resolved_skills", "unresolved_skills"},
    "session.expired": {"session_id", "status", "expired_at"},
    "case.completed": {"case_id", "status", "results", "completed_at"},
}


def test_every_documented_type_has_a_realistic_sample():
    assert set(REALISTIC_DATA_FIELDS) == set(EVENT_TYPES)
    assert tuple(EVENT_TYPES) == SAMPLE_EVENT_TYPES


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_sample_has_ids_timestamp_and_plausible_data(event_type):
    before = datetime.now(UTC).replace(microsecond=0)
    event = sample_event(event_type)

    assert set(event) == {
        "id", "event", "created_at", "case_id", "session_id", "data", "django_klarefi_test"
    }  # fmt: skip
    assert event["django_klarefi_test"] is True
    assert event["event"] == event_type
    assert event["id"].startswith("evt_test_")
    assert len(event["id"]) > len("evt_test_") + 8
    assert event["case_id"].startswith("case_")
    assert event["session_id"].startswith("sess_")
    assert event["created_at"].endswith("Z")
    created = datetime.fromisoformat(event["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(UTC)
    assert REALISTIC_DATA_FIELDS[event_type] <= set(event["data"])
    # Ids inside data agree with the envelope.
    if "session_id" in event["data"]:
        assert event["data"]["session_id"] == event["session_id"]
    if "case_id" in event["data"]:
        assert event["data"]["case_id"] == event["case_id"]


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_sample_survives_signing_and_verification(event_type):
    event = sample_event(event_type)
    body = json.dumps(event)
    header = sign_webhook_payload(body, "whsec_sample")
    assert verify_webhook_signature(body, header, "whsec_sample") == event


def test_sample_ids_are_unique():
    events = [sample_event(event_type) for event_type in EVENT_TYPES for _ in range(50)]
    for key in ("id", "case_id", "session_id"):
        values = [event[key] for event in events]
        assert len(set(values)) == len(values), key


def test_given_ids_are_used_everywhere():
    event = sample_event(
        "case.completed", case_id="case_42", session_id="sess_7", event_id="evt_fixed"
    )
    assert (event["id"], event["case_id"], event["session_id"]) == (
        "evt_fixed",
        "case_42",
        "sess_7",
    )
    assert event["data"]["case_id"] == "case_42"
    assert event["data"]["sessions"] == ["sess_7"]
    assert sample_event("session.created", session_id="sess_7")["data"]["session_id"] == "sess_7"


def test_empty_ids_are_kept_as_given():
    event = sample_event("session.expired", case_id="", session_id="")
    assert (event["case_id"], event["session_id"]) == ("", "")


def test_data_is_merged_on_top():
    extra = {"confidence": 0.5, "note": "from --data", "extracted_fields": {"only": "this"}}
    event = sample_event("document.processed", data=extra)
    data = event["data"]
    assert data["confidence"] == 0.5
    assert data["note"] == "from --data"
    assert data["extracted_fields"] == {"only": "this"}  # top-level keys are replaced
    assert data["document_type"] == "payslip"  # the rest of the sample stays


def test_merged_data_is_copied_not_shared():
    extra = {"nested": {"a": 1}}
    first = sample_event("skill.resolved", data=extra)
    first["data"]["nested"]["a"] = 2
    assert extra == {"nested": {"a": 1}}
    assert sample_event("skill.resolved", data=extra)["data"]["nested"] == {"a": 1}


def test_unknown_type_gets_generic_data():
    event = sample_event("invoice.paid", data={"amount": 3})
    assert event["event"] == "invoice.paid"
    assert event["id"].startswith("evt_test_")
    assert event["data"]["object"] == "test_event"
    assert event["data"]["amount"] == 3


@pytest.mark.django_db
def test_test_events_are_stored_as_tests_and_others_are_not(client, handlers):
    from django_klarefi.models import Event
    from django_klarefi.testing import post_event

    post_event(client, sample_event("case.completed", event_id="evt_sample"))
    post_event(client, {"id": "evt_real", "event": "case.completed"})
    # A marker that is not exactly true does not make a test event.
    post_event(client, {"id": "evt_truthy", "event": "case.completed", "django_klarefi_test": 1})
    assert dict(Event.objects.values_list("event_id", "is_test")) == {
        "evt_sample": True,
        "evt_real": False,
        "evt_truthy": False,
    }
    # Handlers see it on the event they are given.
    assert {event.event_id: event.is_test for _, event in handlers.calls} == {
        "evt_sample": True,
        "evt_real": False,
        "evt_truthy": False,
    }
