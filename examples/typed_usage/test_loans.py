"""The project's tests: no conftest, the klarefi_signals fixture comes from the plugin."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from django_klarefi.signals import case_completed, event_received
from django_klarefi.testing import SentSignal, build_event, encode_event, post_event, signed_headers

pytestmark = pytest.mark.django_db


def test_completed_case_notifies_underwriting(
    client: Client, klarefi_signals: list[SentSignal]
) -> None:
    event = build_event("case.completed", case_id="case_42")
    response = post_event(client, event)

    assert response.status_code == 200
    assert [signal for signal, _ in klarefi_signals] == [case_completed, event_received]
    assert klarefi_signals[0].event.case_id == "case_42"
    assert mail.outbox[0].subject == "Case case_42: approved"


def test_redelivery_does_not_notify_twice(client: Client) -> None:
    event = build_event("case.completed")
    post_event(client, event)
    assert post_event(client, event).json()["status"] == "already_processed"
    assert len(mail.outbox) == 1


def test_signed_callback_reaches_the_api_view(client: Client) -> None:
    body = encode_event({"event": "case.status", "case_id": "case_7"})
    response = client.post(
        "/api/case-status/", body, content_type="application/json", headers=signed_headers(body)
    )
    assert response.status_code == 200
    assert response.json()["case_id"] == "case_7"


def test_unsigned_callback_is_refused(client: Client) -> None:
    response = client.post("/api/case-status/", b"{}", content_type="application/json")
    assert response.status_code == 401
