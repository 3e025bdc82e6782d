"""django_klarefi.testing: the helpers users test their receivers with."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient

from django_klarefi.event_types import TEST_EVENT_KEY
from django_klarefi.models import Event
from django_klarefi.samples import SAMPLE_EVENT_TYPES
from django_klarefi.signals import EVENT_SIGNALS, case_completed, event_received, skill_resolved
from django_klarefi.signature import verify_webhook
from django_klarefi.testing import (
    SentSignal,
    apost_event,
    build_event,
    capture_signals,
    post_event,
    signed_headers,
)
from tests.conftest import SECRET

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("event_type", SAMPLE_EVENT_TYPES)
def test_build_event_is_a_realistic_sample_with_a_fresh_id(event_type):
    first, second = build_event(event_type), build_event(event_type)
    assert first["event"] == event_type
    assert first["id"] != second["id"]
    assert {"id", "event", "created_at", "case_id", "session_id", "data"} <= set(first)
    assert first["data"]


def test_build_event_is_marked_as_a_test_event(client):
    event = build_event("case.completed")
    assert event[TEST_EVENT_KEY] is True
    post_event(client, event)
    assert Event.objects.get().is_test is True


def test_build_event_overrides_top_level_keys():
    event = build_event("case.completed", id="evt_mine", case_id="case_9", data={"x": 1})
    assert (event["id"], event["case_id"], event["data"]) == ("evt_mine", "case_9", {"x": 1})


def test_signed_headers_verify_with_the_configured_secret():
    body = b'{"event":"case.completed"}'
    headers = signed_headers(body)
    assert list(headers) == ["X-Klarefi-Signature"]
    verified = verify_webhook(body, headers["X-Klarefi-Signature"], SECRET)
    assert verified.payload == {"event": "case.completed"}


def test_signed_headers_with_secret_and_timestamp():
    body = b'{"event":"case.completed"}'
    headers = signed_headers(body, secret="whsec_other", timestamp=1_700_000_000)
    verified = verify_webhook(
        body, headers["X-Klarefi-Signature"], "whsec_other", now=1_700_000_000
    )
    assert verified.timestamp == 1_700_000_000


def test_post_event_builds_an_event_from_its_type(client, handlers):
    response = post_event(client, "skill.resolved")
    assert response.status_code == 200
    event = Event.objects.get()
    assert event.event_type == "skill.resolved"
    assert event.event_id == response.json()["event_id"]
    assert handlers.names == ["typed", "event_received"]


def test_post_event_with_a_timestamp(client):
    timestamp = int(time.time()) - 10
    post_event(client, "case.completed", timestamp=timestamp)
    assert Event.objects.get().signed_at.timestamp() == timestamp


def test_apost_event_posts_through_the_async_client(handlers):
    async def deliver():
        return await apost_event(AsyncClient(), build_event("case.completed", id="evt_async"))

    response = async_to_sync(deliver)()
    assert response.status_code == 200
    assert response.json() == {"status": "processed", "event_id": "evt_async"}
    assert Event.objects.get().event_id == "evt_async"
    assert handlers.names == ["typed", "event_received"]


def test_apost_event_rejection_with_a_forged_secret():
    async def deliver():
        return await apost_event(AsyncClient(), "case.completed", secret="whsec_forged")

    assert async_to_sync(deliver)().status_code == 401


def test_capture_signals_records_per_type_then_catch_all_in_order(client):
    with capture_signals() as sent:
        post_event(client, build_event("case.completed", id="evt_a"))
        post_event(client, build_event("skill.resolved", id="evt_b"))
    assert [(signal, event.event_id) for signal, event in sent] == [
        (case_completed, "evt_a"),
        (event_received, "evt_a"),
        (skill_resolved, "evt_b"),
        (event_received, "evt_b"),
    ]
    assert all(isinstance(entry, SentSignal) for entry in sent)
    assert sent[0].event.status == Event.Status.PROCESSED


def test_capture_signals_undocumented_type_sends_only_the_catch_all(client):
    with capture_signals() as sent:
        post_event(client, {"id": "evt_new", "event": "brand.new"})
    assert [signal for signal, _ in sent] == [event_received]


def test_capture_signals_records_nothing_for_a_duplicate(client):
    event = build_event("case.completed")
    post_event(client, event)
    with capture_signals() as sent:
        post_event(client, event)
    assert sent == []


def receiver_counts():
    return [len(signal.receivers) for signal in [*EVENT_SIGNALS.values(), event_received]]


def test_capture_signals_disconnects_on_exit_even_when_the_block_raises(client):
    before = receiver_counts()
    inside, captured = [], []

    def fail_inside_the_block():
        with capture_signals() as sent:
            captured.append(sent)
            inside.append(receiver_counts())
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside_the_block()
    assert inside == [[count + 1 for count in before]]
    assert receiver_counts() == before
    post_event(client, "case.completed")
    assert captured == [[]]


def test_nested_captures_both_record(client):
    with capture_signals() as outer:
        with capture_signals() as inner:
            post_event(client, "case.completed")
        post_event(client, "case.completed")
    assert len(inner) == 2
    assert len(outer) == 4


def test_klarefi_signals_fixture(client, klarefi_signals):
    post_event(client, build_event("case.completed", id="evt_fixture"))
    assert [(signal, event.event_id) for signal, event in klarefi_signals] == [
        (case_completed, "evt_fixture"),
        (event_received, "evt_fixture"),
    ]


@pytest.mark.django_db
def test_without_a_secret_the_helpers_say_how_to_set_one_in_test_settings(client, settings):
    settings.KLAREFI_WEBHOOK_SECRET = ""
    with pytest.raises(ImproperlyConfigured) as raised:
        post_event(client, "case.completed")
    message = str(raised.value)
    assert 'KLAREFI_WEBHOOK_SECRET = "whsec_test"' in message
    assert "settings fixture" in message
    assert "override_settings" in message
    assert "secret=" in message
