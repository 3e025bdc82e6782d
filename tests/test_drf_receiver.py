"""KlarefiWebhookAPIView answers every delivery exactly as the plain receiver does.

Each test runs against both endpoints (the plain view and the DRF view) and asserts the
same status, body and headers.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.handlers.base import BaseHandler
from django.db import connection
from django.test import RequestFactory
from django.urls import resolve, reverse
from rest_framework.throttling import AnonRateThrottle

from django_klarefi.contrib.rest_framework import KlarefiWebhookAPIView
from django_klarefi.models import Event
from django_klarefi.testing import build_event, encode_event, post_event, signed_headers
from tests.klarefi_checks import run_klarefi_checks
from tests.testapp.models import HandlerRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_drf")]

ENDPOINTS = ["django_klarefi:webhook", "api-webhook"]


@pytest.fixture(params=ENDPOINTS)
def url(request):
    return reverse(request.param)


def answer(response):
    return response.status_code, response.json(), response.headers.get("Retry-After")


def test_new_event_is_processed_then_deduplicated(client, handlers, url):
    event = build_event("case.completed", id="evt_same")
    assert answer(post_event(client, event, url=url)) == (
        200,
        {"status": "processed", "event_id": "evt_same"},
        None,
    )
    assert answer(post_event(client, event, url=url)) == (
        200,
        {"status": "already_processed", "event_id": "evt_same"},
        None,
    )
    stored = Event.objects.get()
    assert (stored.deliveries, stored.attempts) == (2, 1)
    assert handlers.names == ["typed", "event_received"]


def test_the_two_endpoints_share_one_dedupe(client, handlers):
    event = build_event("case.completed", id="evt_both")
    assert post_event(client, event).json()["status"] == "processed"
    response = post_event(client, event, url=reverse("api-webhook"))
    assert response.json() == {"status": "already_processed", "event_id": "evt_both"}
    assert Event.objects.get().deliveries == 2


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "whsec_forged"}, "no_matching_signature"),
        ({"signature": "nonsense"}, "malformed_signature_header"),
    ],
)
def test_bad_signature_is_401(client, handlers, url, kwargs, reason):
    status, body, _ = answer(post_event(client, "case.completed", url=url, **kwargs))
    assert (status, body["error"]) == (401, reason)
    assert Event.objects.count() == 0


def test_missing_header_is_401(client, url):
    response = client.post(url, data=b"{}", content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (401, "missing_signature_header")


def test_signed_non_event_is_400(client, url):
    response = post_event(client, b"[1]", url=url)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_payload")


def test_body_over_the_limit_is_413(client, settings, url):
    settings.KLAREFI_MAX_BODY_BYTES = 32
    response = post_event(client, "case.completed", url=url)
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")


def test_handler_failure_is_500_and_recorded(client, handlers, url):
    handlers.fail_with = RuntimeError("boom")
    event = build_event("case.completed", id="evt_fail")
    assert answer(post_event(client, event, url=url)) == (
        500,
        {"status": "failed", "event_id": "evt_fail"},
        None,
    )
    assert Event.objects.get().status == Event.Status.FAILED
    assert HandlerRecord.objects.count() == 0


def test_no_secret_is_503_with_retry_after(client, settings, url):
    body = encode_event(build_event("case.completed"))
    headers = signed_headers(body)
    settings.KLAREFI_WEBHOOK_SECRET = ""
    response = client.post(url, data=body, content_type="application/json", headers=headers)
    assert answer(response) == (503, {"error": "not_configured"}, "60")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_are_405_with_allow(client, url, method):
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST, OPTIONS"


def test_options_is_200_with_allow(client, url):
    response = client.options(url)
    assert response.status_code == 200
    assert response.headers["Allow"] == "POST, OPTIONS"


def test_accept_header_does_not_change_the_answer(client, handlers, url):
    body = encode_event(build_event("case.completed", id="evt_html"))
    response = client.post(
        url,
        data=body,
        content_type="application/json",
        headers={**signed_headers(body), "Accept": "text/html"},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


def test_signed_post_from_a_logged_in_browser_passes_csrf(csrf_client, handlers, url):
    # A logged-in session and no CSRF token: DRF's default SessionAuthentication refuses
    # the client's POST to another view, but both receivers accept the signed one.
    csrf_client.force_login(User.objects.create_user("browser"))
    refused = csrf_client.post(
        reverse("session-first"), data=b"{}", content_type="application/json"
    )
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    response = post_event(csrf_client, "case.completed", url=url)
    assert response.json()["status"] == "processed"


def test_api_view_is_marked_for_the_checks():
    view = resolve(reverse("api-webhook")).func
    assert view.cls is KlarefiWebhookAPIView
    assert KlarefiWebhookAPIView.klarefi_receiver is True


def test_api_view_is_never_wrapped_in_atomic_requests(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    handler = BaseHandler()
    view = resolve(reverse("api-webhook")).func
    assert handler.make_view_atomic(view) is view
    # The check is real: an ordinary DRF view would be wrapped.
    other = resolve(reverse("signed")).func
    assert handler.make_view_atomic(other) is not other


class OnePerMinute(AnonRateThrottle):
    rate = "1/min"


def test_subclass_adds_throttling(handlers):
    # What the DRF view is for: the API's throttling, set by subclassing.
    caches["default"].clear()
    view = type("ThrottledWebhook", (KlarefiWebhookAPIView,), {"throttle_classes": [OnePerMinute]})
    factory = RequestFactory()
    first = encode_event(build_event("case.completed"))
    second = encode_event(build_event("case.completed"))
    answers = [
        view.as_view()(
            factory.post(
                "/", data=body, content_type="application/json", headers=signed_headers(body)
            )
        )
        for body in (first, second)
    ]
    assert [response.status_code for response in answers] == [200, 429]
    assert Event.objects.count() == 1


def test_routing_only_the_drf_receiver_satisfies_the_url_check(settings):
    settings.ROOT_URLCONF = "tests.urls_drf_receiver_only"
    assert [
        message.id
        for message in run_klarefi_checks()
        if message.id and message.id.startswith("django_klarefi")
    ] == []
    # The check is real: without any receiver routed, it reports one.
    settings.ROOT_URLCONF = "tests.urls_without_receiver"
    assert "django_klarefi.E011" in [message.id for message in run_klarefi_checks()]
