"""The Event admin and personal data: payloads and tracebacks only with
``view_event_payload``, on every page that shows an event; the erase action behind
``erase_event``; ``payload_erased_at`` shown.

Reprocessing an erased event (the core's ``erased`` outcome) is in tests/test_erasure_core.py.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from django_klarefi.models import Event

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_klarefi_event_changelist"
SEND_TEST = "admin:django_klarefi_event_send_test_event"
MARKER = "Ingrid-Bergstrom-IBAN-SE4550000000058398257466"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/receivers.py", line 12, in on_case\n'
    "    raise ValueError(event.payload['data']['name'])\n"
    f"ValueError: {MARKER}\n"
)

READER = ("view_event",)
PAYLOAD_READER = ("view_event", "view_event_payload")


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


def login(client, *codenames: str, superuser: bool = False) -> User:
    if superuser:
        user = User.objects.create_superuser("root", password="pw")
    else:
        user = User.objects.create_user("staff", password="pw", is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="django_klarefi", codename__in=codenames
            )
        )
    client.force_login(user)
    return user


def change_url(event: Event) -> str:
    return reverse("admin:django_klarefi_event_change", args=[event.pk])


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


# Who sees what


@pytest.mark.parametrize("perms", [READER, PAYLOAD_READER], ids=["reader", "payload reader"])
def test_changelist_shows_the_envelope_to_both(client, perms):
    stored()
    login(client, *perms)
    html = page(client, reverse(CHANGELIST))
    assert "evt_1" in html
    assert "case_1" in html
    assert MARKER not in html


def test_change_page_without_the_permission_shows_the_envelope_and_the_exception_class(client):
    event = stored()
    login(client, *READER)
    html = page(client, change_url(event))
    assert MARKER not in html
    assert "Traceback" not in html
    assert "ValueError (message and traceback hidden)" in html
    assert "Hidden: it holds personal data." in html
    for shown in ("evt_1", "case_1", "ses_1", "case.completed"):
        assert shown in html


@pytest.mark.parametrize("superuser", [False, True], ids=["view_event_payload", "superuser"])
def test_change_page_with_the_permission_shows_everything(client, superuser):
    event = stored()
    login(client, *PAYLOAD_READER, superuser=superuser)
    html = page(client, change_url(event))
    assert MARKER in html
    assert "Traceback (most recent call last):" in html
    assert "Hidden: it holds personal data." not in html


def test_reprocess_result_page_hides_the_new_traceback_without_the_permission(client, handlers):
    event = stored()
    handlers.fail_with = ValueError(MARKER)
    login(client, *READER, "reprocess_event")
    url = reverse("admin:django_klarefi_event_reprocess", args=[event.pk])
    response = client.post(url, follow=True)
    html = response.content.decode()
    assert "failed again (attempt 2)" in html
    assert MARKER not in html
    assert "ValueError (message and traceback hidden)" in html


def test_reprocess_result_page_shows_the_new_traceback_with_the_permission(client, handlers):
    event = stored()
    handlers.fail_with = RuntimeError(MARKER)
    login(client, *PAYLOAD_READER, "reprocess_event")
    url = reverse("admin:django_klarefi_event_reprocess", args=[event.pk])
    html = client.post(url, follow=True).content.decode()
    assert f"RuntimeError: {MARKER}" in html


def test_reprocess_action_message_names_no_data(client, handlers):
    event = stored()
    handlers.fail_with = ValueError(MARKER)
    login(client, *READER, "reprocess_event")
    response = client.post(
        reverse(CHANGELIST),
        {"action": "reprocess_events", "_selected_action": [event.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "0 events succeeded, 1 failed." in html
    assert MARKER not in html


@pytest.mark.parametrize("perms", [READER, PAYLOAD_READER], ids=["reader", "payload reader"])
def test_send_test_event_result_names_no_data(client, handlers, perms):
    login(client, *perms, "send_test_event")
    response = client.post(reverse(SEND_TEST), {"event_type": "case.completed"}, follow=True)
    event = Event.objects.get()
    html = response.content.decode()
    assert f'href="{change_url(event)}"' in html
    assert "stored as processed" in html
    results = event.payload["data"]["results"]
    personal = [
        results["identity"]["full_name"],
        results["identity"]["date_of_birth"],
        results["proof_of_address"]["address"],
        results["proof_of_income"]["monthly_net_income"]["amount"],
    ]
    assert not [value for value in personal if value in html]
    # The event it links to shows the data only with the permission.
    linked = page(client, change_url(event))
    shown = [value for value in personal if value in linked]
    assert shown == (personal if "view_event_payload" in perms else [])


# Erased events say so


def test_an_erased_event_shows_its_erasure_on_both_pages(client):
    event = stored(payload_erased_at=timezone.now())
    Event.objects.filter(pk=event.pk).update(
        payload={"id": "evt_1", "event": "case.completed"}, error="ValueError"
    )
    login(client, *READER)
    assert "klarefi-erased" in page(client, reverse(CHANGELIST))
    html = page(client, change_url(event))
    assert "Payload erased at" in html
    assert "Erased: only the envelope above is kept." in html


# The erase action


def run_erase(client, *events: Event, confirm: bool):
    data = {"action": "erase_selected_events", "_selected_action": [e.pk for e in events]}
    if confirm:
        data["post"] = "yes"
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_erase_action_asks_first_then_erases_and_records_the_user(client, caplog):
    first, second, other = stored(1), stored(2, Event.Status.PROCESSED), stored(3)
    user = login(client, *READER, "erase_event")
    html = page(client, reverse(CHANGELIST))
    assert 'value="erase_selected_events"' in html

    confirmation = run_erase(client, first, second, confirm=False).content.decode()
    assert "Erase the personal data of the 2 selected events?" in confirmation
    assert not Event.objects.filter(payload_erased_at__isnull=False).exists()

    with caplog.at_level(logging.INFO, logger="django_klarefi"):
        response = run_erase(client, first, second, confirm=True)
    assert "Erased the payload data of 2 events." in response.content.decode()
    for event in (first, second):
        event.refresh_from_db()
        assert event.payload_erased_at is not None
        assert "data" not in event.payload
        assert MARKER not in event.error
    other.refresh_from_db()
    assert other.payload_erased_at is None
    [entry] = LogEntry.objects.all()
    assert entry.user == user
    assert f"the admin selection (pk {first.pk}, {second.pk})" in entry.change_message
    assert MARKER not in caplog.text


def test_erase_action_needs_the_erase_permission(client):
    event = stored()
    login(client, *PAYLOAD_READER, "reprocess_event", "delete_event")
    assert 'value="erase_selected_events"' not in page(client, reverse(CHANGELIST))
    run_erase(client, event, confirm=True)
    event.refresh_from_db()
    assert event.payload_erased_at is None


def test_erase_action_across_a_filtered_list_records_the_filter(client):
    stored(1)
    stored(2, Event.Status.PROCESSED)
    login(client, *READER, "erase_event")
    response = client.post(
        reverse(CHANGELIST) + "?status=failed",
        {
            "action": "erase_selected_events",
            "_selected_action": [Event.objects.get(event_id="evt_1").pk],
            "select_across": "1",
            "post": "yes",
        },
        follow=True,
    )
    assert "Erased the payload data of 1 event." in response.content.decode()
    assert set(
        Event.objects.filter(payload_erased_at__isnull=False).values_list("event_id", flat=True)
    ) == {"evt_1"}
    assert "the admin list's filter (status=failed)" in LogEntry.objects.get().change_message
