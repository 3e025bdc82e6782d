"""The events API: permissions, cursor pagination without COUNT, filters, reprocess."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory, force_authenticate

from django_klarefi.contrib.rest_framework import EventSerializer, EventViewSet
from django_klarefi.models import Event
from django_klarefi.testing import build_event, post_event
from tests.conftest import SECRET

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]

LIST = "django_klarefi_api:event-list"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_event(number: int, **fields) -> Event:
    received = fields.pop("received_at", T0 + timedelta(minutes=number))
    event_type = fields.pop("event_type", "case.completed")
    return Event.objects.create(
        event_id=f"evt_{number}",
        event_type=event_type,
        payload={"id": f"evt_{number}", "event": event_type},
        received_at=received,
        last_received_at=received,
        **fields,
    )


def user(name: str, *, staff: bool = False, perms: tuple[str, ...] = ()) -> User:
    account = User.objects.create_user(name, is_staff=staff)
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_klarefi", codename__in=perms)
    )
    return account


def detail(event: Event, suffix: str = "detail") -> str:
    return reverse(f"django_klarefi_api:event-{suffix}", args=[event.pk])


@pytest.fixture
def staff_client(client):
    client.force_login(user("staff", staff=True, perms=("view_event",)))
    return client


# Permissions


def test_anonymous_and_non_staff_users_are_refused(client):
    assert client.get(reverse(LIST)).status_code == 403
    client.force_login(user("plain"))
    assert client.get(reverse(LIST)).status_code == 403


def test_staff_without_view_event_is_refused_list_and_detail(client):
    # Security fix: IsAdminUser alone let every staff user read every payload.
    event = make_event(1)
    client.force_login(user("staff_only", staff=True))
    for url in (reverse(LIST), detail(event)):
        response = client.get(url)
        assert response.status_code == 403
        assert "view_event" in response.json()["detail"]
        assert "evt_1" not in response.content.decode()


def test_view_event_without_staff_is_refused_by_the_default_setting(client):
    # The permission is required on top of KLAREFI_API_PERMISSION_CLASSES, not instead.
    client.force_login(user("not_staff", perms=("view_event",)))
    assert client.get(reverse(LIST)).status_code == 403


def test_staff_can_list(staff_client):
    make_event(1)
    response = staff_client.get(reverse(LIST))
    assert response.status_code == 200
    assert [row["event_id"] for row in response.json()["results"]] == ["evt_1"]


def test_permission_setting_replaces_the_default(client, settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = ["rest_framework.permissions.IsAuthenticated"]
    client.force_login(user("plain", perms=("view_event",)))
    assert client.get(reverse(LIST)).status_code == 200


def test_the_setting_does_not_drop_view_event(client, settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = ["rest_framework.permissions.AllowAny"]
    assert client.get(reverse(LIST)).status_code == 403
    client.force_login(user("plain"))
    assert client.get(reverse(LIST)).status_code == 403


def test_read_permission_dropped_by_subclassing():
    class OpenEventViewSet(EventViewSet):
        permission_classes = [AllowAny]
        read_permission_classes = []

    make_event(1)
    response = OpenEventViewSet.as_view({"get": "list"})(APIRequestFactory().get("/events/"))
    assert response.status_code == 200


def test_permission_by_subclassing(client, settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = ["rest_framework.permissions.AllowAny"]
    client.force_login(user("plain", perms=("view_event",)))
    assert client.get(reverse(LIST)).status_code == 200
    # tests/drfapp's subclass sets permission_classes = [IsAdminUser]: the setting is ignored.
    assert client.get(reverse("staff-events")).status_code == 403


# Serializer


def test_detail_exposes_payload_and_processing_fields(client):
    client.force_login(user("reader", staff=True, perms=("view_event", "view_event_payload")))
    staff_client = client
    post_event(staff_client, build_event("case.completed", id="evt_real", case_id="case_7"))
    event = Event.objects.get()
    body = staff_client.get(detail(event)).json()
    # The fields the API promises: the payload and the processing bookkeeping.
    assert set(body) == {
        *("id", "event_id", "endpoint", "event_type", "case_id", "session_id", "status"),
        "error",
        *("attempts", "deliveries", "is_test", "signed_at", "received_at"),
        *("last_received_at", "processed_at", "payload_erased_at", "payload"),
    }
    assert body["event_id"] == "evt_real"
    assert body["case_id"] == "case_7"
    assert body["status"] == "processed"
    assert body["payload"] == event.payload
    assert body["is_test"] is True  # built by build_event, a test event
    assert SECRET not in staff_client.get(detail(event)).content.decode()


def test_serializer_is_read_only():
    assert all(field.read_only for field in EventSerializer().fields.values())


def test_unknown_event_is_404(staff_client):
    assert (
        staff_client.get(reverse("django_klarefi_api:event-detail", args=[999])).status_code == 404
    )


# Pagination


def test_cursor_pages_walk_newest_first_without_count(staff_client, django_assert_max_num_queries):
    for number in range(7):
        make_event(number)
    # Two events received in the same microsecond: the -pk tie-break orders them.
    make_event(7, received_at=T0 + timedelta(minutes=6))
    url = reverse(LIST) + "?page_size=3"
    seen = []
    with CaptureQueriesContext(connection) as queries:
        while url:
            # session, user, its permissions and its groups' (view_event), page
            with django_assert_max_num_queries(5):
                page = staff_client.get(url).json()
            assert "count" not in page
            seen += [row["event_id"] for row in page["results"]]
            url = page["next"]
    assert seen == ["evt_7", "evt_6", "evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    sql = " ".join(query["sql"].upper() for query in queries.captured_queries)
    assert "COUNT(" not in sql


def test_previous_link_walks_back(staff_client):
    for number in range(4):
        make_event(number)
    first = staff_client.get(reverse(LIST) + "?page_size=2").json()
    second = staff_client.get(first["next"]).json()
    back = staff_client.get(second["previous"]).json()
    assert [row["event_id"] for row in back["results"]] == ["evt_3", "evt_2"]


def test_filtered_list_has_no_count_either(staff_client):
    make_event(1, status=Event.Status.FAILED)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(reverse(LIST) + "?status=failed&event_type=case.completed")
    assert response.status_code == 200
    assert not any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)


def test_invalid_cursor_is_404(staff_client):
    assert staff_client.get(reverse(LIST) + "?cursor=garbage").status_code == 404


# Filters


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("event_type=skill.resolved", ["evt_2"]),
        ("status=failed", ["evt_3"]),
        ("case_id=case_a", ["evt_1"]),
        ("session_id=sess_b", ["evt_2"]),
        ("is_test=true", ["evt_3"]),
        ("is_test=false", ["evt_2", "evt_1"]),
        ("received_after=2026-11-01T12:02:00Z", ["evt_3", "evt_2"]),
        ("received_before=2026-11-01T12:02:00%2B00:00", ["evt_1"]),
        ("received_after=2026-11-01T12:01:30Z&received_before=2026-11-01T12:02:30Z", ["evt_2"]),
        ("status=processed&case_id=case_a", ["evt_1"]),
    ],
)
def test_filters(staff_client, query, expected):
    make_event(1, case_id="case_a", status=Event.Status.PROCESSED)
    make_event(2, event_type="skill.resolved", session_id="sess_b")
    make_event(3, status=Event.Status.FAILED, is_test=True)
    response = staff_client.get(f"{reverse(LIST)}?{query}")
    assert response.status_code == 200
    assert [row["event_id"] for row in response.json()["results"]] == expected


@pytest.mark.parametrize(
    "query",
    [
        "status=exploded",
        "received_after=yesterday",
        "received_before=2026-13-01T00:00:00Z",
        "is_test=maybe",
        "event_type=" + "x" * 101,
    ],
)
def test_invalid_filter_is_400_naming_the_parameter(staff_client, query):
    name = query.split("=")[0]
    response = staff_client.get(f"{reverse(LIST)}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [name]


# Reprocess


def test_reprocess_needs_the_permission_even_for_staff(staff_client, handlers):
    event = make_event(1, status=Event.Status.FAILED)
    response = staff_client.post(detail(event, "reprocess"))
    assert response.status_code == 403
    assert handlers.calls == []


def test_reprocess_needs_the_api_permission_too(client, handlers):
    # The reprocess permission is required on top of the API's (IsAdminUser by default).
    client.force_login(user("not_staff", perms=("reprocess_event",)))
    event = make_event(1, status=Event.Status.FAILED)
    assert client.post(detail(event, "reprocess")).status_code == 403


def test_options_on_reprocess_needs_the_permission_too(staff_client):
    # OPTIONS has no action: the route decides, so its metadata is not shown either.
    event = make_event(1, status=Event.Status.FAILED)
    assert staff_client.options(detail(event, "reprocess")).status_code == 403


def test_list_filters_do_not_apply_to_one_event(staff_client):
    event = make_event(1, status=Event.Status.PENDING)
    response = staff_client.get(detail(event) + "?status=failed&received_after=bad")
    assert response.status_code == 200
    assert response.json()["event_id"] == event.event_id


@pytest.mark.django_db(transaction=True)
def test_reprocess_records_a_commit_failure_under_atomic_requests(client, handlers, settings):
    # Were the API inside a request transaction, a receiver's deferred foreign key would
    # fail at the request's COMMIT: a 500 page, and the attempt rolled back with it.
    from tests.testapp.models import HandlerRecordNote

    client.force_login(user("operator", staff=True, perms=("reprocess_event",)))
    event = make_event(1, status=Event.Status.FAILED, attempts=1)
    handlers.on_call = lambda received: HandlerRecordNote.objects.create(record_id=10**9)
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    try:
        assert connection.settings_dict["ATOMIC_REQUESTS"] is True
        response = client.post(detail(event, "reprocess"))
    finally:
        settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False
    assert response.status_code == 200
    assert response.json()["outcome"] == "failed"
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("failed", 2)
    assert "IntegrityError" in event.error


@pytest.fixture
def reprocess_client(client):
    client.force_login(
        user("operator", staff=True, perms=("reprocess_event", "view_event_payload"))
    )
    return client


def test_reprocess_runs_a_failed_event(reprocess_client, handlers):
    event = make_event(1, status=Event.Status.FAILED, error="old", attempts=1)
    response = reprocess_client.post(detail(event, "reprocess"))
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "processed"
    assert body["event"]["status"] == "processed"
    assert body["event"]["attempts"] == 2
    assert body["event"]["error"] == ""
    assert handlers.names == ["typed", "event_received"]


def test_reprocess_reports_a_failing_handler(reprocess_client, handlers):
    handlers.fail_with = RuntimeError("still broken")
    event = make_event(1, status=Event.Status.PENDING)
    response = reprocess_client.post(detail(event, "reprocess"))
    assert response.status_code == 200
    assert response.json()["outcome"] == "failed"
    assert "RuntimeError: still broken" in response.json()["event"]["error"]


def test_processed_event_needs_force(reprocess_client, handlers):
    event = make_event(1, status=Event.Status.PROCESSED, attempts=1)
    response = reprocess_client.post(detail(event, "reprocess"))
    assert response.json()["outcome"] == "already_processed"
    assert handlers.calls == []
    response = reprocess_client.post(detail(event, "reprocess") + "?force=true")
    assert response.json()["outcome"] == "processed"
    assert response.json()["event"]["attempts"] == 2
    assert handlers.names == ["typed", "event_received"]


def test_invalid_force_is_400(reprocess_client, handlers):
    event = make_event(1, status=Event.Status.FAILED)
    response = reprocess_client.post(detail(event, "reprocess") + "?force=sometimes")
    assert response.status_code == 400
    assert list(response.json()) == ["force"]
    assert handlers.calls == []


def test_reprocess_of_an_event_deleted_meanwhile_is_404(handlers):
    class DeletedMeanwhile(EventViewSet):
        # Another process deletes the row between this request's lookup and the attempt.
        def get_object(self):
            event = super().get_object()
            Event.objects.filter(pk=event.pk).delete()
            return event

    event = make_event(1, status=Event.Status.FAILED)
    request = APIRequestFactory().post(f"/events/{event.pk}/reprocess/")
    force_authenticate(request, user=user("operator", staff=True, perms=("reprocess_event",)))
    response = DeletedMeanwhile.as_view({"post": "reprocess"})(request, pk=event.pk)
    assert response.status_code == 404
    assert handlers.calls == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reprocess_while_another_process_runs_it_is_409_in_flight(reprocess_client, handlers):
    event = make_event(1, status=Event.Status.FAILED)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                Event.objects.select_for_update().get(pk=event.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(30)
        response = reprocess_client.post(detail(event, "reprocess"))
    finally:
        release.set()
        holder.join()
    assert response.status_code == 409
    assert response.json()["outcome"] == "in_flight"
    assert response.json()["event"]["status"] == "failed"
    assert handlers.calls == []
