"""The receiver behind a real HTTP server (gunicorn, two workers) on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from django_klarefi.models import Event
from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET
from tests.servers import gunicorn, uvicorn

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


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_server_without_a_secret_answers_json_503_not_configured(debug):
    # gunicorn runs no system checks, so E001 is never seen: the answer says it instead.
    body = json.dumps({"id": "evt_unconfigured", "event": "case.completed"}).encode()
    with gunicorn(
        workers=1, settings_module="tests.settings_unconfigured", env={"KLAREFI_TEST_DEBUG": debug}
    ) as base:
        request = urllib.request.Request(
            base + "/webhooks/klarefi/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Klarefi-Signature": sign_webhook_payload(body, SECRET),
            },
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 503
    assert answer.value.headers["Content-Type"] == "application/json"
    assert answer.value.headers["Retry-After"]
    assert json.loads(answer.value.read()) == {"error": "not_configured"}
    assert not Event.objects.exists()


def post_chunked(url: str, body: bytes, signature: str) -> tuple[int, dict]:
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length), in three chunks."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    third = len(body) // 3 + 1
    chunks = [body[i : i + third] for i in range(0, len(body), third)]
    try:
        connection.request(
            "POST",
            parts.path,
            body=iter(chunks),
            headers={"Content-Type": "application/json", "X-Klarefi-Signature": signature},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("server", [gunicorn, uvicorn], ids=["gunicorn", "uvicorn"])
def test_a_signed_chunked_delivery_is_processed_never_taken_for_a_forgery(server):
    body = json.dumps({"id": "evt_chunked", "event": "case.completed", "pad": "x" * 5000}).encode()
    with server() as base:
        answer = post_chunked(base + "/webhooks/klarefi/", body, sign_webhook_payload(body, SECRET))
        assert answer == (200, {"status": "processed", "event_id": "evt_chunked"})
        forged = post_chunked(base + "/webhooks/klarefi/", body, sign_webhook_payload(body, "x"))
        assert forged[0] == 401
    assert Event.objects.get().event_id == "evt_chunked"
