"""Deliveries to named endpoints through the receiver: routing, per-endpoint secrets,
tolerance and processing mode, per-endpoint dedupe, races across two endpoints, and a
secret rotation in the database while deliveries arrive.

These need the receiver and storing to know endpoints: ``views.webhook(request,
endpoint=...)`` resolving :func:`django_klarefi.endpoints.get_endpoint`, and storing that
dedupes on (endpoint, event_id). They pass once that integration is merged.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import django
import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient, Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import timezone

from django_klarefi import endpoints, tasks
from django_klarefi.contrib.rest_framework import KlarefiWebhookAPIView
from django_klarefi.models import Endpoint, Event
from django_klarefi.signals import event_received
from django_klarefi.testing import (
    apost_event,
    build_event,
    encode_event,
    post_event,
    signed_headers,
)
from tests.conftest import SECRET
from tests.raceapp.delivery import Answer, Delivery
from tests.raceapp.handlers import committed_runs, handler_runs, race_payload
from tests.servers import gunicorn
from tests.settings_races_endpoints import EU_SECRET, KLAREFI_ENCRYPTION_KEYS
from tests.testapp.models import HandlerRecord

TENANT_SECRET = "whsec_tenant_secret_for_deliveries_only_e41c"
ROTATED_SECRET = "whsec_tenant_rotated_for_deliveries_only_93fa"
FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
DUMMY_TASKS = {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}}

# A URLconf of this module: the include, and the DRF view bound to endpoints.
urlpatterns = [
    path("webhooks/klarefi", include("django_klarefi.urls")),
    path("api/eu-hook", KlarefiWebhookAPIView.as_view(endpoint="eu"), name="api-eu"),
    path("api/hooks/<slug:endpoint>", KlarefiWebhookAPIView.as_view(), name="api-named"),
]


@pytest.fixture(autouse=True)
def _endpoints(settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET, "TOLERANCE": 60}}
    settings.KLAREFI_ENCRYPTION_KEYS = KLAREFI_ENCRYPTION_KEYS
    endpoints.clear_cache()
    yield
    endpoints.clear_cache()


@pytest.fixture
def tenant(db):
    return Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)


def stored():
    return sorted(Event.objects.values_list("endpoint", "event_id"))


# Routing and verification.


@pytest.mark.django_db
def test_a_settings_endpoint_receives_its_own_deliveries(client, handlers):
    response = post_event(client, build_event("case.completed", id="evt_1"), endpoint="eu")
    assert response.status_code == 200, response.content
    assert stored() == [("eu", "evt_1")]
    assert [event.endpoint for _, event in handlers.calls] == ["eu", "eu"]


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "/"])
def test_named_endpoints_answer_with_and_without_the_trailing_slash(client, suffix):
    url = reverse("django_klarefi:webhook", kwargs={"endpoint": "eu"}) + suffix
    assert url.startswith("/webhooks/klarefi/eu")
    response = post_event(client, "case.completed", endpoint="eu", url=url)
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_database_endpoint_receives_its_own_deliveries(client, tenant):
    response = post_event(client, build_event("case.completed", id="evt_1"), endpoint="tenant-42")
    assert response.status_code == 200, response.content
    assert stored() == [("tenant-42", "evt_1")]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["nowhere", "inactive"])
def test_an_unknown_or_inactive_endpoint_is_a_logged_404_and_writes_nothing(client, caplog, name):
    Endpoint.objects.create(name="inactive", secret=TENANT_SECRET, is_active=False)
    url = f"/webhooks/klarefi/{name}"
    with caplog.at_level(logging.WARNING, logger="django_klarefi"):
        response = post_event(client, "case.completed", secret=EU_SECRET, url=url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "unknown_endpoint"
    assert "unknown_endpoint" in caplog.text
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_delivery_is_verified_only_with_its_own_endpoints_secrets(client, tenant):
    eu_url = reverse("django_klarefi:webhook", kwargs={"endpoint": "eu"})
    # Signed with eu's secret, posted to default: 401, and the other way round.
    assert (
        post_event(client, "case.completed", endpoint="eu", url="/webhooks/klarefi").status_code
        == 401
    )
    assert post_event(client, "case.completed", url=eu_url).status_code == 401
    assert post_event(client, "case.completed", endpoint="tenant-42", url=eu_url).status_code == 401
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_each_endpoint_has_its_own_tolerance(client):
    old = int(time.time()) - 120  # eu accepts 60 seconds, default 300
    assert post_event(client, "case.completed", endpoint="eu", timestamp=old).status_code == 401
    assert post_event(client, "case.completed", timestamp=old).status_code == 200


@pytest.mark.django_db
def test_an_undecryptable_database_endpoint_is_a_logged_503_with_retry_after(
    client, tenant, settings, caplog
):
    settings.KLAREFI_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    body = encode_event(build_event("case.completed"))
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        response = client.post(
            "/webhooks/klarefi/tenant-42",
            data=body,
            content_type="application/json",
            headers=signed_headers(body, secret=TENANT_SECRET),
        )
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response["Content-Type"] == "application/json"
    assert "tenant-42" in caplog.text
    assert "cannot be decrypted" in caplog.text
    assert TENANT_SECRET not in caplog.text
    assert TENANT_SECRET not in response.content.decode()
    assert not Event.objects.exists()


# Dedupe per endpoint, and what receivers see.


@pytest.mark.django_db
def test_the_same_id_at_two_endpoints_is_two_events_and_redeliveries_are_recognised(
    client, handlers, tenant
):
    event = build_event("case.completed", id="evt_shared")
    for endpoint in ("default", "eu", "tenant-42", "eu"):
        assert post_event(client, event, endpoint=endpoint).status_code == 200
    assert stored() == [("default", "evt_shared"), ("eu", "evt_shared"),
                        ("tenant-42", "evt_shared")]  # fmt: skip
    eu = Event.objects.get(endpoint="eu")
    assert eu.deliveries == 2
    assert eu.attempts == 1
    ran = Counter(event.endpoint for name, event in handlers.calls if name == "event_received")
    assert ran == {"default": 1, "eu": 1, "tenant-42": 1}


@pytest.mark.django_db
def test_a_receiver_that_handles_one_endpoint(client):
    seen = []

    def only_eu(sender, event, **kwargs):
        if event.endpoint != "eu":
            return
        seen.append(event.event_id)

    event_received.connect(only_eu, dispatch_uid="test-only-eu")
    try:
        post_event(client, build_event("case.completed", id="evt_default"))
        post_event(client, build_event("case.completed", id="evt_eu"), endpoint="eu")
    finally:
        event_received.disconnect(dispatch_uid="test-only-eu")
    assert seen == ["evt_eu"]


@pytest.mark.django_db(transaction=True)  # enqueued on commit
@override_settings(TASKS=DUMMY_TASKS)
def test_task_mode_follows_each_endpoints_processing_mode(client, settings, handlers):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET, "PROCESSING": "task"}}
    queued = post_event(client, build_event("case.completed", id="evt_eu"), endpoint="eu")
    assert queued.json()["status"] == "queued"
    processed = post_event(client, build_event("case.completed", id="evt_default"))
    assert processed.json()["status"] == "processed"
    assert len(tasks.task_backends["default"].results) == 1
    assert [event.event_id for _, event in handlers.calls] == ["evt_default", "evt_default"]


@pytest.mark.django_db(transaction=True)
@override_settings(TASKS=DUMMY_TASKS)
def test_a_database_endpoint_in_task_mode_queues(client, handlers):
    Endpoint.objects.create(name="tenant-task", secret=TENANT_SECRET, processing="task")
    response = post_event(client, "case.completed", endpoint="tenant-task")
    assert response.json()["status"] == "queued"
    assert handlers.calls == []
    [result] = tasks.task_backends["default"].results
    assert result.args == [str(Event.objects.get(endpoint="tenant-task").pk)]


# Speed: no extra SQL for a settings endpoint, none for a cached database endpoint.


def delivery_queries(client, **kwargs):
    with CaptureQueriesContext(connection) as queries:
        response = post_event(client, "case.completed", **kwargs)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_endpoints_add_no_sql_to_a_delivery(client, tenant):
    delivery_queries(client, endpoint="tenant-42")  # reads and caches the endpoint
    default = delivery_queries(client)
    assert delivery_queries(client, endpoint="eu") == default
    assert delivery_queries(client, endpoint="tenant-42") == default


# Every entry point knows endpoints.


@pytest.mark.django_db
def test_testing_helpers_post_to_a_named_endpoint(client, tenant):
    assert post_event(client, "case.completed", endpoint="eu").status_code == 200

    async def deliver():
        return await apost_event(AsyncClient(), "case.completed", endpoint="tenant-42")

    assert async_to_sync(deliver)().status_code == 200
    assert set(Event.objects.values_list("endpoint", flat=True)) == {"eu", "tenant-42"}


@pytest.mark.django_db
def test_send_test_event_in_process_to_a_named_endpoint():
    out = io.StringIO()
    call_command("klarefi_send_test_event", "case.completed", "--in-process",
                 "--endpoint", "eu", stdout=out)  # fmt: skip
    event = Event.objects.get()
    assert event.endpoint == "eu"
    assert event.is_test


@pytest.mark.django_db
def test_the_admin_sends_a_test_event_to_the_chosen_endpoint(admin_client, tenant):
    response = admin_client.post(
        reverse("admin:django_klarefi_event_send_test_event"),
        {"endpoint": "tenant-42", "event_type": "case.completed"},
    )
    assert response.status_code == 302
    assert list(Event.objects.values_list("endpoint", flat=True)) == ["tenant-42"]
    page = admin_client.get(response["Location"]).content.decode()
    assert "stored as processed" in page


@pytest.mark.django_db(transaction=True)
def test_reprocess_endpoint_runs_only_that_endpoints_events(handlers):
    for endpoint in ("default", "eu"):
        received = timezone.now() - timedelta(hours=1)
        Event.objects.create(
            event_id="evt_same", endpoint=endpoint, event_type="case.completed",
            payload={"id": "evt_same", "event": "case.completed"}, status=Event.Status.FAILED,
            attempts=1, deliveries=1, received_at=received, last_received_at=received,
        )  # fmt: skip
    call_command("klarefi_reprocess", "--failed", "--endpoint", "eu", stdout=io.StringIO())
    assert {event.endpoint for _, event in handlers.calls} == {"eu"}
    assert dict(Event.objects.values_list("endpoint", "status")) == {
        "default": Event.Status.FAILED,
        "eu": Event.Status.PROCESSED,
    }


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_the_drf_view_bound_to_an_endpoint(client, tenant):
    body = encode_event(build_event("case.completed", id="evt_api"))
    eu = client.post(reverse("api-eu"), data=body, content_type="application/json",
                     headers=signed_headers(body, endpoint="eu"))  # fmt: skip
    assert eu.status_code == 200, eu.content
    named = client.post(
        reverse("api-named", kwargs={"endpoint": "tenant-42"}), data=body,
        content_type="application/json", headers=signed_headers(body, endpoint="tenant-42"),
    )  # fmt: skip
    assert named.status_code == 200, named.content
    wrong = client.post(reverse("api-eu"), data=body, content_type="application/json",
                        headers=signed_headers(body))  # fmt: skip
    assert wrong.status_code == 401
    assert stored() == [("eu", "evt_api"), ("tenant-42", "evt_api")]


# Races across two endpoints, through a real gunicorn.


def post_to(base, path, delivery):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        base + path,
        data=delivery.body,
        headers={"Content-Type": "application/json", "X-Klarefi-Signature": delivery.signature},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_id_to_two_endpoints_make_two_events_each_run_once(
    tmp_path,
):
    log = tmp_path / "runs.log"
    payload = race_payload("evt_same", log, sleep=0.2)
    to_default = Delivery.of(payload, secret=SECRET)
    to_eu = Delivery.of(payload, secret=EU_SECRET)
    jobs = [("/webhooks/klarefi/", to_default), ("/webhooks/klarefi/eu", to_eu)] * 20
    with (
        gunicorn(workers=4, settings_module="tests.settings_races_endpoints") as base,
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda job: post_to(base, *job), jobs))
    statuses = Counter(answer.status for answer in answers)
    assert 500 not in statuses
    assert set(statuses) <= {200, 409, 503}, statuses
    assert stored() == [("default", "evt_same"), ("eu", "evt_same")]
    for event in Event.objects.all():
        assert event.status == Event.Status.PROCESSED
        assert event.attempts == 1
    assert committed_runs("evt_same") == 2  # once per endpoint
    assert handler_runs(log) == {"evt_same": 2}


# A secret rotation in the database while deliveries arrive.


@pytest.mark.django_db(transaction=True)
def test_rotating_a_database_secret_while_deliveries_arrive_has_no_gap():
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    stop = threading.Event()
    answers: list[tuple[str, int]] = []

    def deliver(secret, label):
        client = Client()
        while not stop.is_set():
            response = post_event(client, "case.completed", secret=secret,
                                  url="/webhooks/klarefi/tenant-42")  # fmt: skip
            answers.append((label, response.status_code))

    old = threading.Thread(target=deliver, args=(TENANT_SECRET, "old"))
    old.start()
    try:
        time.sleep(0.3)
        endpoint.rotate_secret(ROTATED_SECRET, keep_previous_for=timedelta(hours=1))
        endpoint.save()  # as the admin does
        new = threading.Thread(target=deliver, args=(ROTATED_SECRET, "new"))
        new.start()
        time.sleep(0.3)
    finally:
        stop.set()
        old.join()
        new.join()
    # Every delivery answered 200, signed with the old secret or the new one: no gap.
    assert {status for _, status in answers} == {200}
    assert {label for label, _ in answers} == {"old", "new"}
    # Once the previous secret expires, it is refused.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    endpoints.clear_cache()  # or CACHE_SECONDS later
    client = Client()
    url = "/webhooks/klarefi/tenant-42"
    assert post_event(client, "case.completed", secret=TENANT_SECRET, url=url).status_code == 401
    assert post_event(client, "case.completed", secret=ROTATED_SECRET, url=url).status_code == 200
    assert HandlerRecord.objects.count() == 0  # no handlers connected here
