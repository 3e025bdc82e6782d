"""An erased event in the core's processing path (issue 17), through every way in:

* ``process_event()`` refuses an event whose ``payload_erased_at`` is set: the outcome
  ``erased`` (``Outcome.ERASED``), nothing runs, the row is unchanged; the admin, the API
  and the task say so;
* a redelivery of an erased event (which carries the data again) is answered 200 and
  counted, like a processed event's; it never runs and is never stored again;
* ``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``: a successful attempt erases the payload
  in the transaction that marks the event processed; a failed one keeps it for the retry;
* erasure racing a redelivery (PostgreSQL): the data does not come back, and the handlers
  run at most once.

These need the core's side of issue 17 (processing, attempts, storing, outcomes).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse

from django_klarefi.models import Event
from django_klarefi.personal_data import ERASED_OUTCOME, envelope, erase_events
from django_klarefi.processing import process_event
from django_klarefi.testing import post_event
from tests.test_tasks import DUMMY, IMMEDIATE
from tests.testapp.models import HandlerRecord

pytestmark = pytest.mark.django_db(transaction=True)

MARKER = "Lars-Eriksen-Passport-PA1234567"


def payload(event_id: str = "evt_core_1") -> dict:
    return {
        "id": event_id,
        "event": "case.completed",
        "case_id": "case_core",
        "session_id": "ses_core",
        "data": {"name": MARKER},
    }


def erase(event_id: str) -> int:
    return erase_events(
        Event.objects.filter(event_id=event_id), actor="test", filter_description=event_id
    )


def failed_then_erased(client, handlers, event_id: str = "evt_core_1") -> Event:
    handlers.fail_with = ValueError("down")
    assert post_event(client, payload(event_id)).status_code == 500
    handlers.fail_with = None
    handlers.calls.clear()
    assert erase(event_id) == 1
    return Event.objects.get(event_id=event_id)


def row(event_id: str = "evt_core_1") -> dict:
    return Event.objects.values(
        "status", "attempts", "deliveries", "payload", "error", "payload_erased_at"
    ).get(event_id=event_id)


# process_event refuses an erased event


def test_process_event_refuses_an_erased_event(client, handlers):
    event = failed_then_erased(client, handlers)
    before = row()
    for force in (False, True):
        result = process_event(event, force=force)
        assert result.outcome == ERASED_OUTCOME
    assert handlers.calls == []
    assert row() == before


def test_process_event_refuses_an_event_erased_after_it_was_loaded(client, handlers):
    handlers.fail_with = ValueError("down")
    post_event(client, payload())
    handlers.fail_with = None
    handlers.calls.clear()
    loaded = Event.objects.get()  # still holds the data
    erase("evt_core_1")
    assert process_event(loaded).outcome == ERASED_OUTCOME
    assert handlers.calls == []
    assert "data" not in row()["payload"]


def test_admin_reprocess_button_refuses_it_with_a_clear_message(client, handlers):
    event = failed_then_erased(client, handlers)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    url = reverse("admin:django_klarefi_event_reprocess", args=[event.pk])
    html = client.post(url, follow=True).content.decode()
    assert (
        "Not reprocessed: the payload data of case.completed evt_core_1 was erased, so it is "
        "never run again." in html
    )
    assert handlers.calls == []


def test_admin_reprocess_action_counts_it(client, handlers):
    event = failed_then_erased(client, handlers)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    response = client.post(
        reverse("admin:django_klarefi_event_changelist"),
        {"action": "reprocess_events", "_selected_action": [event.pk]},
        follow=True,
    )
    assert "1 had its payload data erased and is never run again" in response.content.decode()
    assert handlers.calls == []


@pytest.mark.urls("tests.urls_drf")
def test_api_reprocess_refuses_it_with_409(client, handlers):
    event = failed_then_erased(client, handlers)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    url = reverse("django_klarefi_api:event-reprocess", args=[event.pk])
    response = client.post(url + "?force=true")
    assert response.status_code == 409
    body = response.json()
    assert body["outcome"] == "erased"
    assert "never run again" in body["detail"]
    assert body["event"]["payload_erased_at"] is not None
    assert handlers.calls == []


def test_task_of_an_erased_pending_event_does_not_run(client, handlers):
    from django_klarefi.tasks import _run_process_event

    # Stored pending (as a delivery in task mode stores it), erased before its task runs.
    with override_settings(KLAREFI_PROCESSING="task", TASKS={"default": {"BACKEND": DUMMY}}):
        assert post_event(client, payload()).status_code in (200, 202)
    erase("evt_core_1")
    assert _run_process_event(str(Event.objects.get().pk)) == ERASED_OUTCOME
    assert handlers.calls == []
    assert (row()["status"], row()["attempts"]) == ("pending", 0)


# Redelivery of an erased event


@pytest.mark.parametrize("status", ["processed", "failed"])
def test_redelivery_of_an_erased_event_is_200_counted_never_run_never_stored(
    client, handlers, status
):
    if status == "failed":
        failed_then_erased(client, handlers)
    else:
        post_event(client, payload())
        handlers.calls.clear()
        erase("evt_core_1")
    before = row()
    response = post_event(client, payload())
    assert response.status_code == 200
    assert handlers.calls == []
    after = row()
    assert after["deliveries"] == before["deliveries"] + 1
    assert after["payload"] == envelope(payload())
    assert MARKER not in repr(after)
    assert after["payload_erased_at"] == before["payload_erased_at"]
    assert (after["status"], after["attempts"]) == (before["status"], before["attempts"])


def test_redelivery_of_an_erased_event_in_task_mode_queues_nothing(client, handlers):
    post_event(client, payload())
    handlers.calls.clear()
    erase("evt_core_1")
    with override_settings(KLAREFI_PROCESSING="task", TASKS={"default": {"BACKEND": IMMEDIATE}}):
        response = post_event(client, payload())
    assert response.status_code == 200
    assert handlers.calls == []
    assert "data" not in row()["payload"]


# KLAREFI_PAYLOAD_RETENTION = timedelta(0)


@override_settings(KLAREFI_PAYLOAD_RETENTION=timedelta(0))
def test_retention_zero_erases_in_the_attempt_that_succeeds(client, handlers):
    seen = []
    handlers.on_call = lambda event: seen.append(event.payload["data"]["name"])
    assert post_event(client, payload()).status_code == 200
    assert seen == [MARKER, MARKER]  # the receivers got the data
    after = row()
    assert after["status"] == "processed"
    assert after["payload"] == envelope(payload())
    assert after["payload_erased_at"] is not None


@override_settings(KLAREFI_PAYLOAD_RETENTION=timedelta(0))
def test_retention_zero_keeps_a_failed_payload_for_the_retry(client, handlers):
    handlers.fail_with = ValueError("down")
    post_event(client, payload())
    failed = row()
    assert failed["payload"] == payload()
    assert failed["payload_erased_at"] is None
    handlers.fail_with = None
    assert post_event(client, payload()).status_code == 200  # Klarefi's retry
    assert row()["payload_erased_at"] is not None
    assert "data" not in row()["payload"]


@override_settings(
    KLAREFI_PAYLOAD_RETENTION=timedelta(0),
    KLAREFI_PROCESSING="task",
    TASKS={"default": {"BACKEND": IMMEDIATE}},
)
def test_retention_zero_in_task_mode(client, handlers):
    post_event(client, payload())
    after = row()
    assert after["status"] == "processed"
    assert after["payload_erased_at"] is not None
    assert "data" not in after["payload"]


# Races (PostgreSQL): erasure against a redelivery of the same event


def _in_thread(target, results: list) -> threading.Thread:
    def run():
        try:
            results.append(target())
        except Exception as exc:  # reported by the assertions below
            results.append(exc)
        finally:
            connections.close_all()

    return threading.Thread(target=run)


@pytest.mark.postgres
@pytest.mark.parametrize("eraser", ["request", "retention"])
def test_erasure_racing_a_redelivery_never_brings_the_data_back(handlers, eraser, settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(0)  # the prune erases processed ones
    rounds = 8
    for number in range(rounds):
        event_id = f"evt_race_{number}"
        handlers.fail_with = ValueError("down")
        post_event(Client(), payload(event_id))  # stored failed: a redelivery would run it
        handlers.fail_with = None
        start = threading.Barrier(2)
        results: list = []

        def redeliver(event_id=event_id, start=start):
            start.wait()
            return post_event(Client(), payload(event_id)).status_code

        def erase_it(event_id=event_id, start=start):
            start.wait()
            if eraser == "request":
                return erase(event_id)
            from django.core.management import call_command

            call_command("klarefi_prune_events", "--quiet", stdout=None)
            return "pruned"

        threads = [_in_thread(redeliver, results), _in_thread(erase_it, results)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not [r for r in results if isinstance(r, Exception)], results
        assert [r for r in results if isinstance(r, int) and r >= 100] in ([200], [409])
        # Whatever the order: at most one run, and once erased, the data is gone for good.
        assert HandlerRecord.objects.filter(event_id=event_id).count() <= 2  # typed + catch-all
        if eraser == "request" or row(event_id)["status"] == "processed":
            erase(event_id)  # what the next erasure or prune run does
        after = row(event_id)
        assert after["payload_erased_at"] is not None
        assert MARKER not in repr(after)
        # A later redelivery neither runs nor stores the data again.
        runs = HandlerRecord.objects.filter(event_id=event_id).count()
        assert post_event(Client(), payload(event_id)).status_code == 200
        assert HandlerRecord.objects.filter(event_id=event_id).count() == runs
        assert MARKER not in repr(row(event_id))
