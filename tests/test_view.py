"""The receiver, row by row of the README's status code table (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from django.core.handlers.wsgi import LimitedStream
from django.test import override_settings
from django.urls import reverse

from django_klarefi.models import Event
from django_klarefi.testing import encode_event, post_event, signature_header
from tests.conftest import SECRET
from tests.testapp.models import HandlerRecord

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/webhooks/klarefi"


def case_completed(**extra):
    return {
        "id": "evt_1",
        "event": "case.completed",
        "case_id": "case_1",
        "data": {"ok": True},
        **extra,
    }


def test_url_is_reversible():
    assert reverse("django_klarefi:webhook") == URL


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_get_405(client, handlers, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert Event.objects.count() == 0
    assert handlers.calls == []


def test_options_answers_for_url_checks(client):
    response = client.options(URL)
    assert response.status_code == 200
    assert "POST" in response["Allow"]
    # JSON, like every other answer.
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"allow": ["POST", "OPTIONS"]}


def chunked_wsgi_request(rf, body, *, terminated):
    """A WSGI request as a server hands over a chunked body: no CONTENT_LENGTH, the
    decoded body in wsgi.input, and (gunicorn) wsgi.input_terminated."""
    request = rf.post(
        URL,
        body,
        content_type="application/json",
        headers={"X-Klarefi-Signature": signature_header(body), "Transfer-Encoding": "chunked"},
    )
    del request.META["CONTENT_LENGTH"]
    request._stream = LimitedStream(io.BytesIO(b""), 0)  # Django reads no declared length
    request.META["wsgi.input"] = io.BytesIO(body)
    if terminated:
        request.META["wsgi.input_terminated"] = True
    return request


def test_a_chunked_body_is_read_where_the_wsgi_server_marks_its_end(rf, handlers):
    from django_klarefi.views import webhook

    body = encode_event(case_completed())
    response = webhook(chunked_wsgi_request(rf, body, terminated=True))
    assert (response.status_code, json.loads(response.content)["status"]) == (200, "processed")
    assert Event.objects.get().event_id == "evt_1"


def test_a_chunked_body_a_wsgi_server_cannot_delimit_is_411_not_a_forgery(rf, handlers, caplog):
    from django_klarefi.views import webhook

    body = encode_event(case_completed())
    with caplog.at_level(logging.WARNING, logger="django_klarefi"):
        response = webhook(chunked_wsgi_request(rf, body, terminated=False))
    assert response.status_code == 411
    assert json.loads(response.content)["error"] == "length_required"
    assert "length_required" in caplog.text
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing_signature_header"),
        ("nonsense", "malformed_signature_header"),
        ("t=1704067200", "no_v1_signature"),
    ],
)
def test_bad_headers_get_401(client, handlers, signature, reason, caplog):
    body = encode_event(case_completed())
    headers = {} if signature is None else {"X-Klarefi-Signature": signature}
    with caplog.at_level(logging.WARNING, logger="django_klarefi"):
        response = client.post(URL, body, content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert Event.objects.count() == 0
    assert handlers.calls == []
    [record] = [r for r in caplog.records if r.name.startswith("django_klarefi")]
    assert record.levelno == logging.WARNING
    assert reason in record.getMessage()
    assert "127.0.0.1" in record.getMessage()


def test_wrong_secret_gets_401(client, handlers):
    response = post_event(client, case_completed(), secret="whsec_forged")
    assert response.status_code == 401
    assert response.json()["error"] == "no_matching_signature"
    assert Event.objects.count() == 0
    assert handlers.calls == []


# Well past the 300 s window: the clock moves on between signing and verifying (the
# boundary itself is tested on the verifier, with a fixed clock, in test_signature.py).
@pytest.mark.parametrize("offset", [-330, 330])
def test_stale_or_future_timestamp_gets_401(client, handlers, offset):
    response = post_event(client, case_completed(), timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert response.json()["error"] == "timestamp_outside_tolerance"
    assert Event.objects.count() == 0


@override_settings(KLAREFI_WEBHOOK_TOLERANCE=10)
def test_tolerance_setting_applies(client):
    assert post_event(client, case_completed(), timestamp=int(time.time()) - 60).status_code == 401


@override_settings(KLAREFI_MAX_BODY_BYTES=100)
def test_body_over_limit_gets_413(client, handlers):
    response = post_event(client, case_completed(pad="x" * 200))
    assert response.status_code == 413
    assert Event.objects.count() == 0


@override_settings(KLAREFI_MAX_BODY_BYTES=100)
def test_body_over_limit_without_content_length_gets_413(rf):
    from django_klarefi.views import webhook

    body = encode_event(case_completed(pad="x" * 200))
    request = rf.post(
        URL,
        body,
        content_type="application/json",
        headers={"X-Klarefi-Signature": signature_header(body)},
    )
    del request.META["CONTENT_LENGTH"]
    request._stream.remaining = len(body)  # a chunked body: the length is not declared
    assert webhook(request).status_code == 413
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", [b"[1]", b"{}", b'{"event": 3}', b"not json", b"\xff"])
def test_signed_body_that_is_not_an_event_gets_400(client, handlers, body):
    response = post_event(client, body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"
    assert Event.objects.count() == 0
    assert handlers.calls == []


def test_event_type_too_long_gets_400(client):
    response = post_event(client, {"event": "x" * 101})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_event"
    assert Event.objects.count() == 0


def test_new_event_is_stored_processed_and_signalled_once(client, handlers):
    t = int(time.time())
    response = post_event(client, case_completed(session_id="ses_1"), timestamp=t)
    assert response.status_code == 200
    assert response.json() == {"status": "processed", "event_id": "evt_1"}
    event = Event.objects.get()
    assert (event.event_id, event.event_type, event.case_id, event.session_id) == (
        "evt_1",
        "case.completed",
        "case_1",
        "ses_1",
    )
    assert event.payload == case_completed(session_id="ses_1")
    assert event.status == Event.Status.PROCESSED
    assert (event.attempts, event.deliveries, event.error) == (1, 1, "")
    assert event.signed_at.timestamp() == t
    assert event.processed_at is not None
    assert event.received_at == event.last_received_at
    # The per-type signal first, then the catch-all, each once, with the Event.
    assert handlers.names == ["typed", "event_received"]
    assert all(e.pk == event.pk for _, e in handlers.calls)


def test_redelivery_of_processed_event_counts_but_does_not_signal(client, handlers):
    assert post_event(client, case_completed()).status_code == 200
    response = post_event(client, case_completed())
    assert response.status_code == 200
    assert response.json()["status"] == "already_processed"
    event = Event.objects.get()
    assert (event.deliveries, event.attempts) == (2, 1)
    assert event.last_received_at > event.received_at
    assert handlers.names == ["typed", "event_received"]


def test_event_without_id_dedupes_on_body_digest(client, handlers):
    payload = {"event": "session.expired", "session_id": "ses_9"}
    post_event(client, payload)
    post_event(client, payload)
    event = Event.objects.get()
    assert event.event_id.startswith("sha256:")
    assert event.deliveries == 2
    assert handlers.names == ["typed", "event_received"]


def test_handler_failure_gets_500_and_stores_failed_with_traceback(client, handlers):
    handlers.fail_with = RuntimeError("boom in handler")
    response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response.json() == {"status": "failed", "event_id": "evt_1"}
    assert "Traceback" not in response.content.decode()
    event = Event.objects.get()
    assert event.status == Event.Status.FAILED
    assert "RuntimeError: boom in handler" in event.error
    assert "Traceback" in event.error
    assert (event.attempts, event.deliveries) == (1, 1)
    # The handler's own write was rolled back with it.
    assert HandlerRecord.objects.count() == 0


def test_redelivery_of_failed_event_runs_handlers_again(client, handlers):
    handlers.fail_with = RuntimeError("first time")
    assert post_event(client, case_completed()).status_code == 500
    handlers.fail_with = None
    response = post_event(client, case_completed())
    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    event = Event.objects.get()
    assert event.status == Event.Status.PROCESSED
    assert (event.attempts, event.deliveries, event.error) == (2, 2, "")
    # Handlers ran in both attempts; only the successful attempt's writes remain.
    assert handlers.names == ["typed", "typed", "event_received"]
    assert HandlerRecord.objects.count() == 2


def test_failure_in_catch_all_after_typed_rolls_back_both(client, handlers):
    def fail_in_catch_all(event):
        if len(handlers.calls) == 2:
            raise ValueError("catch-all failed")

    handlers.on_call = fail_in_catch_all
    assert post_event(client, case_completed()).status_code == 500
    assert HandlerRecord.objects.count() == 0
    assert Event.objects.get().status == Event.Status.FAILED


def test_unknown_type_is_stored_and_only_catch_all_fires(client, handlers):
    response = post_event(client, {"id": "evt_new", "event": "brand.new_type"})
    assert response.status_code == 200
    assert Event.objects.get().event_type == "brand.new_type"
    assert handlers.names == ["event_received"]


@pytest.mark.parametrize(
    "event_type",
    [
        "session.created",
        "document.uploaded",
        "document.processed",
        "skill.resolved",
        "skill.needs_review",
        "session.complete",
        "session.submitted_incomplete",
        "session.expired",
        "case.completed",
    ],
)
def test_each_documented_type_fires_its_own_signal(client, event_type):
    from django_klarefi import signals

    received = []
    signal = getattr(signals, event_type.replace(".", "_"))
    signal.connect(
        lambda sender, event, **kw: received.append(event.event_type), weak=False, dispatch_uid="t"
    )
    try:
        assert post_event(client, {"event": event_type}).status_code == 200
    finally:
        signal.disconnect(dispatch_uid="t")
    assert received == [event_type]


def test_csrf_enforcing_client_is_accepted(csrf_client, handlers):
    assert post_event(csrf_client, case_completed()).status_code == 200
    assert handlers.names == ["typed", "event_received"]


def test_response_never_contains_secret_or_traceback(client, handlers):
    handlers.fail_with = RuntimeError(f"leaky {SECRET}")
    responses = [
        post_event(client, case_completed()),
        post_event(client, case_completed(), secret="whsec_wrong"),
        post_event(client, b"[]"),
    ]
    for response in responses:
        text = response.content.decode()
        assert SECRET not in text
        assert "Traceback" not in text
        json.loads(text)


def test_ids_that_are_not_strings_are_handled(client):
    assert (
        post_event(
            client, {"id": 42, "event": "x.y", "case_id": 7, "session_id": ["no"]}
        ).status_code
        == 200
    )
    event = Event.objects.get()
    assert (event.event_id, event.case_id, event.session_id) == ("42", "7", "")
    assert post_event(client, {"id": {"a": 1}, "event": "x.y"}).status_code == 200
    assert Event.objects.filter(event_id__startswith="sha256:").count() == 1


@pytest.fixture
def atomic_requests(settings):
    """ATOMIC_REQUESTS = True on the default database. It is a key of each database's
    settings (override_settings(ATOMIC_REQUESTS=...) would set a setting nobody reads), and
    the connection reads it from this very dict on each request."""
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    from django.db import connection

    assert connection.settings_dict["ATOMIC_REQUESTS"] is True
    yield
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False


def test_handlers_run_in_a_transaction_of_their_own_under_atomic_requests(
    client, handlers, atomic_requests
):
    from django.db import connection

    savepoints = []
    handlers.on_call = lambda event: savepoints.append(list(connection.savepoint_ids))
    assert post_event(client, case_completed()).status_code == 200
    # The processing transaction is the outermost one: no request transaction around it,
    # so its atomic block is not a savepoint inside another.
    assert savepoints == [[], []]


def test_handler_failure_is_recorded_under_atomic_requests(client, handlers, atomic_requests):
    handlers.fail_with = RuntimeError("boom")
    assert post_event(client, case_completed()).status_code == 500
    event = Event.objects.get()
    assert event.status == Event.Status.FAILED
    assert "boom" in event.error
    assert HandlerRecord.objects.count() == 0


def test_login_required_middleware_does_not_block(client, settings, handlers):
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    assert post_event(client, case_completed()).status_code == 200


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("secret", ["", [], None])
def test_missing_secret_answers_503_not_configured_and_logs_the_setting(
    client, settings, caplog, debug, secret
):
    settings.DEBUG = debug
    settings.KLAREFI_WEBHOOK_SECRET = secret
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        response = post_event(client, case_completed(), secret="whsec_any")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "not_configured"}
    assert response["Retry-After"]
    [record] = [r for r in caplog.records if r.name.startswith("django_klarefi")]
    assert record.levelno == logging.ERROR
    assert "KLAREFI_WEBHOOK_SECRET" in record.getMessage()
    assert not Event.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_answers_json_500_without_a_traceback(
    client, settings, caplog, debug
):
    # A tolerance that is not a number (check E003 reports it; gunicorn runs no checks)
    # makes verification itself raise TypeError.
    settings.DEBUG = debug
    settings.KLAREFI_WEBHOOK_TOLERANCE = "300"
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "internal_error"}
    assert b"Traceback" not in response.content
    assert b"TypeError" not in response.content
    [record] = [r for r in caplog.records if r.name.startswith("django_klarefi")]
    assert record.levelno == logging.ERROR
    assert record.exc_info
    assert record.exc_info[0] is TypeError
    assert not Event.objects.exists()


def test_rotation_with_two_configured_secrets(client, settings, handlers):
    settings.KLAREFI_WEBHOOK_SECRET = ["whsec_new", "whsec_old"]
    assert post_event(client, case_completed(), secret="whsec_old").status_code == 200
    assert post_event(client, case_completed(id="evt_2"), secret="whsec_new").status_code == 200
    assert post_event(client, case_completed(id="evt_3"), secret=SECRET).status_code == 401
    assert Event.objects.count() == 2
