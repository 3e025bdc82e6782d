"""The receiver's URL, with and without its trailing slash, behind real servers.

Klarefi's dashboard shows the endpoint as ``https://your-app.com/webhooks/klarefi``, with
no slash. Both forms must receive the event, with ``APPEND_SLASH`` and ``CommonMiddleware``
on, DEBUG on or off: a redirect loses a webhook, as its sender does not follow it.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from django.conf import settings
from django.urls import resolve, reverse

from django_klarefi import views
from django_klarefi.models import Event
from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET
from tests.servers import gunicorn, runserver

Server = Callable[..., AbstractContextManager[str]]


def post(base: str, path: str, event_id: str) -> tuple[int, bytes]:
    """POST one signed event to ``path``, without following a redirect."""
    body = json.dumps({"id": event_id, "event": "case.completed", "case_id": "c1"}).encode()
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-Klarefi-Signature": sign_webhook_payload(body, SECRET),
            },
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_url_name_reverses_to_the_form_klarefi_shows():
    assert reverse("django_klarefi:webhook") == "/webhooks/klarefi"


@pytest.mark.parametrize("path", ["/webhooks/klarefi", "/webhooks/klarefi/"])
def test_both_forms_resolve_to_the_receiver(path):
    assert resolve(path).func is views.webhook


def test_the_suite_runs_with_common_middleware_and_append_slash():
    assert "django.middleware.common.CommonMiddleware" in settings.MIDDLEWARE
    assert settings.APPEND_SLASH is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("debug", ["0", "1"], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("server", [gunicorn, runserver], ids=["gunicorn", "runserver"])
def test_both_forms_receive_the_event(server: Server, debug: str):
    env = {"KLAREFI_TEST_DEBUG": debug}
    with server(settings_module="tests.settings_urls", env=env) as base:
        answers = {
            path: post(base, path, f"evt_{index}")
            for index, path in enumerate(["/webhooks/klarefi", "/webhooks/klarefi/"])
        }
    assert {path: (status, json.loads(body)) for path, (status, body) in answers.items()} == {
        "/webhooks/klarefi": (200, {"status": "processed", "event_id": "evt_0"}),
        "/webhooks/klarefi/": (200, {"status": "processed", "event_id": "evt_1"}),
    }
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["evt_0", "evt_1"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("debug", ["0", "1"], ids=["debug-off", "debug-on"])
def test_the_old_include_line_still_receives_the_slash_form(debug: str):
    # path("webhooks/klarefi/", include(...)), as earlier versions documented. Without the
    # slash the delivery is lost (a redirect, or a 500 in DEBUG): check W003 says so.
    env = {"KLAREFI_TEST_DEBUG": debug, "KLAREFI_TEST_URLCONF": "tests.urls_old_include"}
    with gunicorn(workers=1, settings_module="tests.settings_urls", env=env) as base:
        slash_status, slash_body = post(base, "/webhooks/klarefi/", "evt_slash")
        bare_status, _ = post(base, "/webhooks/klarefi", "evt_bare")
    assert (slash_status, json.loads(slash_body)["status"]) == (200, "processed")
    assert bare_status == (500 if debug == "1" else 301)
    assert list(Event.objects.values_list("event_id", flat=True)) == ["evt_slash"]
