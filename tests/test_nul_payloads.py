"""Signed events with U+0000 (a JSON ``\\u0000``): accepted and stored losslessly on every
database, PostgreSQL's jsonb included, and handed to receivers exactly as sent."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/webhooks/klarefi/"

# Text extracted from a scanned document, with NUL bytes in values, in a key, and nested.
BODY = (
    b'{"id":"evt_nul","event":"document.processed","case_id":"case_nul",'
    b'"data":{"text":"Invoice\\u0000No. 42\\u0000","fields":[{"\\u0000key":"v\\u0000"}],'
    b'"escaped":"\\\\u0000 is not NUL"}}'
)


def post_signed(client, body):
    return client.post(
        URL,
        body,
        content_type="application/json",
        HTTP_X_KLAREFI_SIGNATURE=sign_webhook_payload(body, SECRET),
    )


def stored_column_text(event_id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(payload AS TEXT) FROM django_klarefi_event WHERE event_id = %s",
            [event_id],
        )
        return cursor.fetchone()[0]


def test_receivers_get_the_payload_exactly_as_sent(client, handlers):
    received = []
    handlers.on_call = lambda event: received.append(json.dumps(event.payload))
    response = post_signed(client, BODY)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    expected = json.loads(BODY)
    assert expected["data"]["text"] == "Invoice\x00No. 42\x00"
    assert [json.loads(text) for text in received] == [expected, expected]


def test_the_stored_row_gives_back_the_exact_payload(client, handlers):
    post_signed(client, BODY)
    event = Event.objects.get()
    assert event.payload == json.loads(BODY)
    assert (event.event_id, event.event_type, event.case_id) == (
        "evt_nul",
        "document.processed",
        "case_nul",
    )
    # What the column holds: the documented encoding, with no U+0000 in it.
    column = json.loads(stored_column_text("evt_nul"))
    assert list(column) == ["$django_klarefi_json"]
    assert json.loads(column["$django_klarefi_json"]) == json.loads(BODY)


def test_a_reprocess_runs_the_handlers_with_the_same_payload(client, handlers):
    payloads = []
    handlers.on_call = lambda event: payloads.append(event.payload)
    post_signed(client, BODY)
    event = Event.objects.get(event_id="evt_nul")
    assert process_event(event, force=True).outcome == Outcome.PROCESSED
    assert payloads == [json.loads(BODY)] * 4


def test_a_handler_may_save_the_event_it_was_given(client, handlers):
    handlers.on_call = lambda event: event.save()
    assert post_signed(client, BODY).json()["status"] == "processed"
    assert Event.objects.get().payload == json.loads(BODY)


def test_nul_in_the_references_and_type(client, handlers):
    body = b'{"id":"evt\\u0000x","event":"odd\\u0000type","case_id":"c\\u0000","session_id":"s1"}'
    response = post_signed(client, body)
    assert response.status_code == 200, response.content
    event = Event.objects.get()
    # An id with U+0000 cannot be a column value: the digest of the body identifies it.
    assert event.event_id.startswith("sha256:")
    assert event.event_type == "odd\ufffdtype"
    assert (event.case_id, event.session_id) == ("", "s1")
    assert event.payload == json.loads(body)
    # Not a documented type: the catch-all signal only.
    assert handlers.names == ["event_received"]
    assert post_signed(client, body).json()["status"] == "already_processed"


def test_a_payload_that_looks_like_the_encoding_reads_back_as_itself():
    value = {"$django_klarefi_json": '{"event": "x"}'}
    event = Event.objects.create(
        event_id="evt_lookalike",
        event_type="x",
        payload=value,
        received_at="2026-01-01T00:00:00Z",
        last_received_at="2026-01-01T00:00:00Z",
    )
    event.refresh_from_db()
    assert event.payload == value


def test_payloads_without_nul_are_stored_as_they_are(client, handlers):
    body = b'{"id":"evt_plain","event":"case.completed","note":"\\\\u0000"}'
    post_signed(client, body)
    assert json.loads(stored_column_text("evt_plain")) == json.loads(body)
    # And the column can still be queried by key.
    assert Event.objects.filter(payload__note="\\u0000").exists()
