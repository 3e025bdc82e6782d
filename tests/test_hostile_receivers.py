"""Receivers that break things in less obvious ways, found by a hostile review of the
processing core: each test reproduced a break of "no event lost, none handled twice,
bookkeeping never decided by receivers" (docs/how-it-works.md, "What a receiver may do to
its event") before its fix. Both databases.
"""

from __future__ import annotations

import contextlib

import django
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save, pre_save
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


def case_completed(event_id: str = "evt_review", **extra):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1", **extra}


def once(action):
    done = []

    def run(event):
        if not done:
            done.append(True)
            action(event)

    return run


def run_queued_task():
    from django_klarefi import tasks

    [queued] = tasks.task_backends["default"].results
    return queued.task.call(*queued.args)


# --- 1. A receiver that processes another stored event fails its own attempt (PostgreSQL)


def test_a_receiver_that_reprocesses_another_event_does_not_fail_its_own(client, handlers):
    # Ordinary: "when case.completed arrives, run the failed event that came before it".
    # process_event() nested in a receiver SET LOCALs its own attempt token; the outer
    # attempt's guarded UPDATE (current_setting(...) = its token) then matches no row, and
    # the outer attempt is failed as if its receiver had deleted its event or run COMMIT.
    handlers.fail_with = RuntimeError("the earlier event fails once")
    post_event(client, case_completed("evt_earlier"))
    handlers.fail_with = None
    assert Event.objects.get(event_id="evt_earlier").status == "failed"

    def run_the_earlier_one(event):
        if event.event_id == "evt_later":
            earlier = Event.objects.get(event_id="evt_earlier")
            assert process_event(earlier).outcome == Outcome.PROCESSED

    handlers.on_call = once(run_the_earlier_one)
    response = post_event(client, case_completed("evt_later"))
    later = Event.objects.get(event_id="evt_later")
    assert (response.json()["status"], later.status, later.error) == ("processed", "processed", "")
    assert Event.objects.get(event_id="evt_earlier").status == "processed"


def test_a_receiver_that_reprocesses_another_event_on_a_redelivery(client, handlers):
    # The same through a stored event's attempt (a failed event's redelivery), where the
    # record's UPDATE always runs.
    handlers.fail_with = RuntimeError("both fail once")
    post_event(client, case_completed("evt_earlier"))
    post_event(client, case_completed("evt_later"))
    handlers.fail_with = None

    def run_the_earlier_one(event):
        if event.event_id == "evt_later":
            process_event(Event.objects.get(event_id="evt_earlier"))

    handlers.on_call = once(run_the_earlier_one)
    assert post_event(client, case_completed("evt_later")).json()["status"] == "processed"
    assert Event.objects.get(event_id="evt_later").status == "processed"


# --- 2. A pre_save receiver that swallows a database error loses the event


@pytest.fixture
def pre_save_swallowing_a_database_error():
    # The classic: create, and ignore a duplicate, without an atomic block of its own.
    # Django marks the transaction for rollback; the INSERT that follows raises
    # TransactionManagementError, which is not SaveSignalFailed: nothing is stored.
    def ensure_user(sender, instance, **kwargs):
        with contextlib.suppress(IntegrityError):
            User.objects.create(username="klarefi-bot")

    User.objects.create(username="klarefi-bot")
    pre_save.connect(ensure_user, sender=Event, dispatch_uid="review-pre-save")
    yield
    pre_save.disconnect(dispatch_uid="review-pre-save", sender=Event)


@pytest.mark.parametrize("mode", ["sync", "task"])
def test_a_pre_save_receiver_swallowing_a_database_error_stores_the_event_failed(
    client, handlers, pre_save_swallowing_a_database_error, mode
):
    # Issue 15 #3: a save-signal receiver's failure ends like any receiver's: stored as
    # failed, with the traceback. Here: 500 internal_error and no row, on every delivery.
    settings = TASK_MODE if mode == "task" else {}
    with override_settings(**settings):
        response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response.json() != {"error": "internal_error"}
    event = Event.objects.get()
    assert event.status == "failed"
    assert "TransactionManagementError" in event.error


# --- 3. A SystemExit from a save-signal receiver: nothing stored


@pytest.mark.parametrize("signal", [pre_save, post_save])
def test_a_save_signal_receiver_raising_system_exit_stores_the_event_failed(
    client, handlers, signal
):
    # A receiver of the event's own signals that raises SystemExit is recorded, then the
    # exit raised again (run_attempt's docstring). A save-signal receiver of Event doing
    # the same leaves nothing stored (_send_save_signal catches Exception only, and the
    # attempt is not "open" yet): the delivery is answered 500 receiver_exit, and after
    # Klarefi's fifth attempt the event is gone without a row.
    def exits(sender, instance, **kwargs):
        raise SystemExit(3)

    signal.connect(exits, sender=Event, dispatch_uid="review-exit")
    try:
        response = post_event(client, case_completed())
    finally:
        signal.disconnect(dispatch_uid="review-exit", sender=Event)
    assert response.status_code == 500
    event = Event.objects.get()
    assert event.status == "failed"
    assert "SystemExit" in event.error


# --- 4. The receiver's refreshed object, saved once the attempt committed


def refresh_then_save_on_commit(event):
    # Ordinary: reload the event, and note something on it once the work is committed
    # (after sending a mail, say). The object holds the row as it stood before the record.
    event.refresh_from_db()

    def note():
        event.case_id = "case_noted"
        event.save()

    transaction.on_commit(note)


def test_a_refreshed_event_saved_on_commit_does_not_undo_a_redeliverys_record(client, handlers):
    handlers.fail_with = RuntimeError("the first attempt fails")
    post_event(client, case_completed())
    handlers.fail_with = None
    HandlerRecord.objects.all().delete()
    handlers.on_call = once(refresh_then_save_on_commit)
    assert post_event(client, case_completed()).json()["status"] == "processed"
    event = Event.objects.get()
    assert (event.case_id, event.status, event.attempts) == ("case_noted", "processed", 2)
    # ... so that nothing runs it again.
    handlers.on_call = None
    handlers.calls.clear()
    call_command("klarefi_reprocess", "--failed", stdout=None)
    assert handlers.calls == []


def test_a_refreshed_event_saved_on_commit_does_not_undo_a_tasks_record(client, handlers):
    handlers.on_call = once(refresh_then_save_on_commit)
    with override_settings(**TASK_MODE):
        assert post_event(client, case_completed()).json()["status"] == "queued"
        assert run_queued_task() == "processed"
    event = Event.objects.get()
    assert (event.case_id, event.status, event.attempts) == ("case_noted", "processed", 1)
    handlers.on_call = None
    handlers.calls.clear()
    call_command("klarefi_reprocess", "--pending", stdout=None)
    assert handlers.calls == []


# --- 5. Raw DB-API on a first delivery is not counted: the record is not written over it


def raw_dbapi_update(event):
    # connection.connection is the driver's own connection: Django's execute wrappers,
    # the attempt's statement count among them, never see it.
    table = connection.ops.quote_name(Event._meta.db_table)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            f"UPDATE {table} SET status = 'pending', attempts = 0 WHERE id = "
            + ("?" if connection.vendor == "sqlite" else "%s"),
            [event.pk],
        )
    finally:
        cursor.close()


def test_a_post_save_receivers_update_of_bookkeeping_is_written_over_like_any_other(client):
    # Same class: Event's post_save receivers run inside the attempt, before the statement
    # count starts. An ORM update() of the row there is not counted: the first delivery
    # skips its record's UPDATE, and the receiver's bookkeeping values are committed.
    def reset(sender, instance, created, **kwargs):
        Event.objects.filter(pk=instance.pk).update(status="pending", attempts=0)

    post_save.connect(reset, sender=Event, dispatch_uid="review-post-save")
    try:
        assert post_event(client, case_completed()).json()["status"] == "processed"
    finally:
        post_save.disconnect(dispatch_uid="review-post-save", sender=Event)
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("processed", 1)


# --- 6. A receiver's BaseException other than SystemExit and KeyboardInterrupt


def test_a_receivers_cancelled_error_is_answered_with_json(client, handlers):
    # asyncio.CancelledError is a BaseException (a receiver that runs a coroutine with
    # async_to_sync, cancelled). The failure is recorded, then the exception raised again
    # (attempts._failed); the view catches SystemExit and KeyboardInterrupt only, so it
    # escapes Django's handler: gunicorn's HTML 500, not the JSON every answer promises.
    import asyncio

    handlers.fail_with = asyncio.CancelledError()
    response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert Event.objects.get().status == "failed"
