"""The receiver behind a real HTTP server (gunicorn, two workers) on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from django_klarefi.models import Event
from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET
from tests.servers import gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def post(url: str, body: bytes, signature: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Klarefi-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_signed_event_over_http_is_stored_once_and_forgery_is_refused():
    body = json.dumps({"id": "evt_http", "event": "case.completed", "case_id": "c1"}).encode()
    with gunicorn(workers=2) as base:
        url = base + "/webhooks/klarefi/"
        assert post(url, body, sign_webhook_payload(body, SECRET)) == (
            200,
            {"status": "processed", "event_id": "evt_http"},
        )
        assert (
            post(url, body, sign_webhook_payload(body, SECRET))[1]["status"] == "already_processed"
        )
        assert post(url, body, sign_webhook_payload(body, "whsec_forged"))[0] == 401
        assert post(url, body, None)[0] == 401
    event = Event.objects.get()
    assert (event.event_id, event.deliveries, event.attempts) == ("evt_http", 2, 1)
