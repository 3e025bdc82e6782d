"""What a receiver does to its own event never decides the attempt's bookkeeping.

Each receiver below touches the ``Event`` it is given (or its row) the way ordinary code
does; each path that runs receivers runs it: a first delivery, a failed event's
redelivery, task mode (the delivery queues, the task runs), and a forced reprocess. On
both databases (this module runs in the SQLite and the PostgreSQL pass). The attempt must
end as it would without the receiver's meddling: recorded once, with its own values, so
that no redelivery, ``klarefi_reprocess --failed`` or ``--pending`` runs it again.
"""

from __future__ import annotations

import django
import pytest
from django.core.management import call_command
from django.test import override_settings

from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.testing import post_event
from tests.testapp.models import HandlerRecord

pytestmark = pytest.mark.django_db(transaction=True)

FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
TASK_MODE = {
    "KLAREFI_PROCESSING": "task",
    "TASKS": {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}},
}
EVENT_ID = "evt_meddling"


def case_completed(**extra):
    return {"id": EVENT_ID, "event": "case.completed", "case_id": "case_1", **extra}


def once(action):
    """Run ``action(event)`` in the first receiver call only (two receivers are connected)."""
    done = []

    def run(event):
        if not done:
            done.append(True)
            action(event)

    return run


def refresh(event):
    event.refresh_from_db()


def refresh_and_save(event):
    event.refresh_from_db()
    event.save()


def save_changed_bookkeeping(event):
    event.status, event.attempts, event.deliveries, event.error = "pending", 0, 0, "mine"
    event.save()


def update_the_row(event):
    Event.objects.filter(pk=event.pk).update(
        status="failed", attempts=42, deliveries=42, error="mine", processed_at=None
    )


# The path, and the (attempts, deliveries) it records.
PATHS = {
    "first_delivery": (1, 1),
    "failed_redelivery": (2, 2),
    "task": (1, 1),
    "reprocess": (2, 1),
}


def run_path(path, client, handlers, meddle):
    """Run the receivers through ``path`` with ``meddle`` as what they do to their event;
    the outcome of the attempt that ran them."""
    if path == "failed_redelivery":
        handlers.fail_with = RuntimeError("the first attempt fails")
        post_event(client, case_completed())
        handlers.fail_with = None
    if path == "reprocess":
        post_event(client, case_completed())
    HandlerRecord.objects.all().delete()
    handlers.calls.clear()
    handlers.on_call = once(meddle)
    if path == "task":
        from django_klarefi import tasks

        with override_settings(**TASK_MODE):
            assert post_event(client, case_completed()).json()["status"] == "queued"
            [queued] = tasks.task_backends["default"].results
            return queued.task.call(*queued.args)
    if path == "reprocess":
        return str(process_event(Event.objects.get(), force=True).outcome)
    return post_event(client, case_completed()).json()["status"]


def assert_recorded_once(attempts, deliveries):
    event = Event.objects.get()
    assert (event.status, event.error, event.attempts, event.deliveries) == (
        "processed",
        "",
        attempts,
        deliveries,
    )
    assert event.processed_at is not None
    assert HandlerRecord.objects.filter(handler="typed").count() == 1


def assert_never_run_again(client, handlers):
    handlers.on_call = None
    handlers.calls.clear()
    assert post_event(client, case_completed()).json()["status"] == "already_processed"
    call_command("klarefi_reprocess", "--failed", "--pending", stdout=None)
    assert handlers.calls == []


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "meddle", [refresh, refresh_and_save, save_changed_bookkeeping, update_the_row]
)
def test_the_attempt_records_its_own_values_whatever_the_receiver_does(
    client, handlers, path, meddle
):
    outcome = run_path(path, client, handlers, meddle)
    assert outcome == "processed"
    assert_recorded_once(*PATHS[path])
    assert_never_run_again(client, handlers)


def test_a_refreshed_event_shows_the_attempts_record(client, handlers):
    # Documented: the row is written with the attempt's record before the receivers run (a
    # first delivery's INSERT; a stored event's UPDATE after its lock).
    seen = []

    def refresh_and_look(event):
        seen.append((event.status, event.attempts))
        event.refresh_from_db()
        seen.append((event.status, event.attempts))

    handlers.on_call = once(refresh_and_look)
    handlers.fail_with = RuntimeError("the first attempt fails")
    post_event(client, case_completed())
    handlers.fail_with = None
    handlers.on_call = once(refresh_and_look)
    post_event(client, case_completed())
    assert seen == [("processed", 1), ("processed", 1), ("processed", 2), ("processed", 2)]


def test_a_receiver_may_save_fields_that_are_not_bookkeeping(client, handlers):
    def note_the_case(event):
        event.case_id = "case_noted"
        event.save(update_fields=["case_id"])

    handlers.on_call = once(note_the_case)
    assert post_event(client, case_completed()).json()["status"] == "processed"
    event = Event.objects.get()
    assert (event.case_id, event.status, event.attempts) == ("case_noted", "processed", 1)


def delete_the_event(event):
    event.delete()


def change_the_event_id(event):
    event.event_id = "evt_renamed"
    event.save(update_fields=["event_id"])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("meddle", [delete_the_event, change_the_event_id])
def test_a_receiver_that_deletes_or_renames_its_event_fails_the_attempt(
    client, handlers, path, meddle
):
    # Deleting (or renaming) the event would let its redelivery be stored and run again:
    # the attempt is rolled back and recorded as failed, the row kept as it was.
    attempts, deliveries = PATHS[path]
    outcome = run_path(path, client, handlers, meddle)
    assert outcome == "failed"
    event = Event.objects.get()
    assert event.event_id == EVENT_ID
    assert (event.status, event.attempts, event.deliveries) == ("failed", attempts, deliveries)
    assert "EventChanged" in event.error
    assert "Receivers may not delete their event or change its id" in event.error
    assert not HandlerRecord.objects.exists()  # the receivers' writes rolled back
    # It runs again, once the receiver leaves its event alone.
    handlers.on_call = None
    assert process_event(event).outcome == Outcome.PROCESSED


def test_a_first_delivery_writes_its_record_with_the_insert_unless_a_receiver_used_the_db(
    client, handlers
):
    # The INSERT carries the record; the record's UPDATE follows only when a receiver ran a
    # statement on the connection (it may have changed the row). Both end the same.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def record_updates(queries):
        return [
            q["sql"]
            for q in queries
            if q["sql"].startswith('UPDATE "django_klarefi_event" SET "status" = \'processed\'')
        ]

    from django_klarefi.signals import EVENT_SIGNALS, event_received

    for signal in (*EVENT_SIGNALS.values(), event_received):  # no receiver touches the DB
        signal.disconnect(dispatch_uid="tests-typed")
        signal.disconnect(dispatch_uid="tests-catch-all")
    with CaptureQueriesContext(connection) as quiet:
        assert post_event(client, case_completed()).json()["status"] == "processed"
    assert record_updates(quiet.captured_queries) == []
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries, event.error) == ("processed", 1, 1, "")

    Event.objects.all().delete()
    event_received.connect(lambda sender, event, **kw: update_the_row(event), weak=False,
                           dispatch_uid="tests-updating")  # fmt: skip
    try:
        with CaptureQueriesContext(connection) as busy:
            assert post_event(client, case_completed()).json()["status"] == "processed"
    finally:
        event_received.disconnect(dispatch_uid="tests-updating")
    assert len(record_updates(busy.captured_queries)) == 1
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries, event.error) == ("processed", 1, 1, "")
