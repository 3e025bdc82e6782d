"""The events API and personal data: the payload and the error only with
``view_event_payload``; ``POST events/erase/`` behind ``erase_event``.

Reprocessing an erased event (the core's ``erased`` outcome) is in tests/test_erasure_core.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from django_klarefi.contrib.rest_framework import EventSerializer
from django_klarefi.models import Event
from django_klarefi.personal_data import envelope

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]

MARKER = "Anneliese-Kowalski-DOB-1971-03-04"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/receivers.py", line 12, in on_case\n'
    f"ValueError: {MARKER}\n"
)
LIST = "django_klarefi_api:event-list"
ERASE = "django_klarefi_api:event-erase"

ENVELOPE_FIELDS = {
    *("id", "event_id", "endpoint", "event_type", "case_id", "session_id", "status", "attempts"),
    *("deliveries", "is_test", "signed_at", "received_at", "last_received_at"),
    *("processed_at", "payload_erased_at"),
}


def stored(number: int = 1, status=Event.Status.FAILED, **fields) -> Event:
    now = timezone.now()
    body = {
        "id": f"evt_{number}",
        "event": "case.completed",
        "case_id": f"case_{number}",
        "session_id": f"ses_{number}",
        "data": {"name": MARKER},
    }
    return Event.objects.create(
        event_id=body["id"],
        event_type=body["event"],
        case_id=body["case_id"],
        session_id=body["session_id"],
        payload=body,
        status=status,
        error=TRACEBACK if status == Event.Status.FAILED else "",
        attempts=1,
        deliveries=1,
        received_at=now,
        last_received_at=now,
        **fields,
    )


def login(client, *perms: str, superuser: bool = False) -> User:
    if superuser:
        account = User.objects.create_superuser("root", password="unused")
    else:
        account = User.objects.create_user("staff", is_staff=True)
        account.user_permissions.set(
            Permission.objects.filter(content_type__app_label="django_klarefi", codename__in=perms)
        )
    client.force_login(account)
    return account


def detail(event: Event, suffix: str = "detail") -> str:
    return reverse(f"django_klarefi_api:event-{suffix}", args=[event.pk])


READER = ("view_event",)
PAYLOAD_READER = ("view_event", "view_event_payload")


# Who sees what


def test_without_view_event_payload_list_and_detail_show_the_envelope_only(client):
    event = stored()
    login(client, *READER)
    row = client.get(reverse(LIST)).json()["results"][0]
    one = client.get(detail(event)).json()
    for body in (row, one):
        assert body["payload"] is None
        assert body["error"] == "ValueError"  # the class, so failures can be told apart
        assert {key for key, value in body.items() if value is not None} >= {
            "event_id",
            "event_type",
            "case_id",
            "session_id",
            "status",
        }
        assert set(body) == {*ENVELOPE_FIELDS, "payload", "error"}
        assert MARKER not in json.dumps(body)
    assert one["case_id"] == "case_1"


@pytest.mark.parametrize("superuser", [False, True], ids=["view_event_payload", "superuser"])
def test_with_view_event_payload_everything_shows(client, superuser):
    event = stored()
    login(client, *PAYLOAD_READER, superuser=superuser)
    for body in (client.get(reverse(LIST)).json()["results"][0], client.get(detail(event)).json()):
        assert body["payload"] == event.payload
        assert body["error"] == TRACEBACK


def test_reprocess_result_hides_the_payload_without_the_permission(client, handlers):
    event = stored()
    handlers.fail_with = ValueError(MARKER)
    login(client, "reprocess_event")
    response = client.post(detail(event, "reprocess"))
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "failed"
    assert body["event"]["payload"] is None
    assert body["event"]["error"] == "ValueError"
    assert MARKER not in response.content.decode()


def test_reprocess_result_shows_the_payload_with_the_permission(client, handlers):
    event = stored()
    handlers.fail_with = ValueError(MARKER)
    login(client, "reprocess_event", "view_event_payload")
    body = client.post(detail(event, "reprocess")).json()
    assert body["event"]["payload"]["data"] == {"name": MARKER}
    assert f"ValueError: {MARKER}" in body["event"]["error"]


def test_serializer_without_a_request_leaves_the_payload_out():
    data = EventSerializer(stored()).data
    assert data["payload"] is None
    assert MARKER not in json.dumps(data)


def test_an_erased_event_says_so(client):
    event = stored(payload_erased_at=timezone.now())
    Event.objects.filter(pk=event.pk).update(payload=envelope(event.payload), error="ValueError")
    login(client, *PAYLOAD_READER)
    body = client.get(detail(event)).json()
    assert body["payload_erased_at"] is not None
    assert body["payload"] == {
        "id": "evt_1",
        "event": "case.completed",
        "case_id": "case_1",
        "session_id": "ses_1",
    }


# POST events/erase/


def test_erase_needs_the_erase_permission_even_for_payload_readers(client):
    event = stored()
    login(client, *PAYLOAD_READER, "reprocess_event")
    response = client.post(reverse(ERASE) + "?case_id=case_1")
    assert response.status_code == 403
    assert "erase_event" in response.json()["detail"]
    event.refresh_from_db()
    assert event.payload_erased_at is None


def test_erase_needs_the_api_permission_too(client):
    # erase_event alone, without staff (IsAdminUser, the API's default): refused.
    stored()
    account = User.objects.create_user("not_staff")
    account.user_permissions.set(Permission.objects.filter(codename="erase_event"))
    client.force_login(account)
    assert client.post(reverse(ERASE) + "?case_id=case_1").status_code == 403


def test_erase_by_case_erases_and_records_the_user(client, caplog):
    stored(1)
    stored(2, Event.Status.PROCESSED)
    account = login(client, "erase_event")
    with caplog.at_level(logging.INFO, logger="django_klarefi"):
        response = client.post(reverse(ERASE) + "?case_id=case_1")
    assert response.status_code == 200
    assert response.json() == {"erased": 1, "filter": "case_id=case_1"}
    erased = Event.objects.get(event_id="evt_1")
    assert erased.payload_erased_at is not None
    assert "data" not in erased.payload
    assert erased.error == "ValueError"
    assert Event.objects.get(event_id="evt_2").payload_erased_at is None
    [entry] = LogEntry.objects.all()
    assert entry.user == account
    assert "case_id=case_1" in entry.change_message
    assert f"by user staff (id {account.pk})" in caplog.text
    assert MARKER not in caplog.text


def test_erase_by_session_and_event_id_narrow_together(client):
    stored(1)
    stored(2)
    login(client, "erase_event")
    response = client.post(reverse(ERASE) + "?session_id=ses_1&event_id=evt_2")
    assert response.json()["erased"] == 0
    response = client.post(reverse(ERASE) + "?session_id=ses_2&event_id=evt_2")
    assert response.json() == {"erased": 1, "filter": "session_id=ses_2 and event_id=evt_2"}


def test_erase_endpoint_narrows_and_never_selects_alone(client):
    stored(1)
    stored(1, endpoint="eu")
    login(client, "erase_event")
    assert client.post(reverse(ERASE) + "?endpoint=eu").status_code == 400
    response = client.post(reverse(ERASE) + "?case_id=case_1&endpoint=eu")
    assert response.json() == {"erased": 1, "filter": "case_id=case_1 and endpoint=eu"}
    assert Event.objects.get(endpoint="eu").payload_erased_at is not None
    assert Event.objects.get(endpoint="default").payload_erased_at is None


def test_erase_without_a_filter_is_400_and_erases_nothing(client):
    stored()
    login(client, "erase_event")
    response = client.post(reverse(ERASE))
    assert response.status_code == 400
    assert "Choose events" in response.json()["non_field_errors"][0]
    assert not Event.objects.filter(payload_erased_at__isnull=False).exists()


def test_erase_is_post_only(client):
    stored()
    login(client, "erase_event", *PAYLOAD_READER)
    assert client.get(reverse(ERASE) + "?case_id=case_1").status_code == 405
