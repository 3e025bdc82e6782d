"""A failure is recorded whatever it is: any exception a receiver raises, a failing save
signal receiver on ``Event``, a receiver's raw COMMIT, a COMMIT whose reply is lost.

Sync and task mode, on both databases (the module runs in both passes).
"""

from __future__ import annotations

import logging

import django
import pytest
from django.db import OperationalError, connection, connections
from django.db.models.signals import post_save, pre_save
from django.test import override_settings

from django_klarefi import tasks
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.records import MAX_ERROR_CHARS
from django_klarefi.testing import post_event
from tests.testapp.models import HandlerRecord

pytestmark = pytest.mark.django_db(transaction=True)

FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
TASK_MODE = {
    "KLAREFI_PROCESSING": "task",
    "TASKS": {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}},
}


def case_completed(event_id="evt_fail", **extra):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1", **extra}


class UnprintableStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ itself fails")


class UnprintableRepr(Exception):
    def __repr__(self):
        raise RuntimeError("__repr__ itself fails")


EXCEPTIONS = {
    # A file name decoded with surrogateescape: a lone surrogate.
    "surrogate": (ValueError("cannot read 'scan\udcff.pdf'"), "scan\\udcff.pdf"),
    "nul": (ValueError("page\x001"), "page\ufffd1"),
    "huge": (ValueError("x" * 5_000_000 + " the end"), "the end"),
    "str_raises": (UnprintableStr("never shown"), "UnprintableStr"),
    "repr_raises": (UnprintableRepr("shown"), "UnprintableRepr: shown"),
}


def run_failing(client, mode, exc):
    """Deliver an event whose receiver raises ``exc``; the delivery's JSON answer and,
    in task mode, the task's return value."""
    calls = []

    def fail(sender, event, **kwargs):
        calls.append(event.event_id)
        raise exc

    from django_klarefi.signals import event_received

    event_received.connect(fail, dispatch_uid="tests-failing")
    try:
        if mode == "sync":
            response = post_event(client, case_completed())
            return response.status_code, response.json()
        with override_settings(**TASK_MODE):
            response = post_event(client, case_completed())
            assert response.json()["status"] == "queued"
            [queued] = tasks.task_backends["default"].results
            return response.status_code, queued.task.call(*queued.args)
    finally:
        event_received.disconnect(dispatch_uid="tests-failing")


def assert_every_log_line_can_be_written(caplog):
    for record in caplog.records:
        logging.Formatter().format(record).encode("utf-8")  # strict: raises on a surrogate


@pytest.mark.parametrize("mode", ["sync", "task"])
@pytest.mark.parametrize("kind", EXCEPTIONS)
def test_any_exception_is_stored_as_the_events_failure(client, caplog, mode, kind):
    exc, expected = EXCEPTIONS[kind]
    with caplog.at_level(logging.INFO):
        status, answer = run_failing(client, mode, exc)
    if mode == "sync":
        assert (status, answer) == (500, {"status": "failed", "event_id": "evt_fail"})
    else:
        assert answer == "failed"
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("failed", 1, 1)
    assert expected in event.error
    assert len(event.error) <= MAX_ERROR_CHARS + 100
    assert_every_log_line_can_be_written(caplog)


@pytest.mark.parametrize("exc_class", [SystemExit, KeyboardInterrupt])
def test_a_receiver_that_exits_is_recorded_and_answered_json(client, exc_class):
    status, answer = run_failing(client, "sync", exc_class(3))
    assert (status, answer) == (500, {"error": "receiver_exit"})
    event = Event.objects.get()
    assert event.status == "failed"
    assert exc_class.__name__ in event.error


@pytest.mark.parametrize("exc_class", [SystemExit, KeyboardInterrupt])
def test_outside_a_request_an_exit_is_recorded_then_raised_again(client, handlers, exc_class):
    # klarefi_reprocess interrupted by ^C in a receiver stops, with the failure stored.
    post_event(client, case_completed())
    handlers.fail_with = exc_class()
    with pytest.raises(exc_class):
        process_event(Event.objects.get(), force=True)
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("failed", 2)
    assert exc_class.__name__ in event.error


@pytest.mark.parametrize("mode", ["sync", "task"])
@pytest.mark.parametrize("signal", [pre_save, post_save], ids=["pre_save", "post_save"])
def test_a_failing_save_signal_receiver_stores_the_event_as_failed(client, handlers, mode, signal):
    def fail(sender, instance, **kwargs):
        HandlerRecord.objects.create(event_id=instance.event_id, handler="save_signal")
        raise RuntimeError("the project's save signal receiver failed")

    signal.connect(fail, sender=Event, weak=False)
    try:
        with override_settings(**TASK_MODE) if mode == "task" else override_settings():
            response = post_event(client, case_completed())
            if mode == "task":
                assert tasks.task_backends["default"].results == []
    finally:
        signal.disconnect(fail, sender=Event)
    # Never a 500 with nothing recorded, never a commit behind an error answer.
    assert (response.status_code, response.json()) == (
        500,
        {"status": "failed", "event_id": "evt_fail"},
    )
    event = Event.objects.get()
    assert (event.status, event.deliveries) == ("failed", 1)
    assert "the project's save signal receiver failed" in event.error
    assert not HandlerRecord.objects.exists()
    assert handlers.calls == []
    # Klarefi's retry runs it, now that the receiver is gone.
    with override_settings(**TASK_MODE) if mode == "task" else override_settings():
        response = post_event(client, case_completed())
        if mode == "task":
            assert response.json()["status"] == "queued"
            [queued] = tasks.task_backends["default"].results
            queued.task.call(*queued.args)
        else:
            assert response.json()["status"] == "processed"
    assert Event.objects.get().status == "processed"


def raw_statement(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)


def attempt(client, mode):
    """Deliver ``case_completed()`` and run its receivers: in sync mode the delivery's answer,
    in task mode the task's return value (the delivery answered ``queued``)."""
    if mode == "sync":
        response = post_event(client, case_completed())
        return response.status_code, response.json()["status"]
    with override_settings(**TASK_MODE):
        assert post_event(client, case_completed()).json()["status"] == "queued"
        results = tasks.task_backends["default"].results
        queued = results[-1]
        return None, queued.task.call(*queued.args)


@pytest.mark.parametrize("mode", ["sync", "task"])
@pytest.mark.parametrize("then_raise", [True, False], ids=["then_raises", "then_returns"])
def test_a_receivers_raw_commit_fails_the_attempt_with_its_record(
    client, handlers, mode, then_raise
):
    # The raw COMMIT ends the attempt's transaction (what it committed stays): the attempt
    # is failed with its error, counted once, never answered as processed.
    def commit(event):
        if not handlers.calls[1:]:  # in the first of the two receivers only
            raw_statement("COMMIT")
            if then_raise:
                raise RuntimeError("raised after a raw COMMIT")

    handlers.on_call = commit
    status, outcome = attempt(client, mode)
    assert (status, outcome) == ((500, "failed") if mode == "sync" else (None, "failed"))
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("failed", 1, 1)
    expected = "raised after a raw COMMIT" if then_raise else "(a raw COMMIT or ROLLBACK)"
    assert expected in event.error
    # It runs again, once.
    handlers.on_call = None
    handlers.calls.clear()
    assert process_event(event).outcome == Outcome.PROCESSED
    event.refresh_from_db()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 2, 1)


@pytest.mark.parametrize("mode", ["sync", "task"])
def test_a_commit_whose_reply_is_lost_is_answered_as_processed(client, handlers, monkeypatch, mode):
    # COMMIT reaches the database, but its reply does not come back: the failure record
    # finds this attempt's own success, and neither counts it again nor answers 500.
    wrapper = type(connections["default"])
    commit = wrapper._commit
    lost = []

    def commit_then_lose_the_reply(self):
        commit(self)
        if handlers.calls and not lost:  # the attempt's COMMIT, not task mode's INSERT
            lost.append(True)
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(wrapper, "_commit", commit_then_lose_the_reply)
    status, outcome = attempt(client, mode)
    monkeypatch.undo()
    assert lost
    assert (status, outcome) == ((200, "processed") if mode == "sync" else (None, "processed"))
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries, event.error) == (
        "processed",
        1,
        1,
        "",
    )
    assert HandlerRecord.objects.filter(handler="typed").count() == 1
    # Never run again for it.
    assert process_event(event).outcome == Outcome.ALREADY_PROCESSED


def test_an_integer_id_and_its_decimal_string_are_one_event(client, handlers):
    # Documented: the event id is text, and an integer id is its decimal text.
    assert post_event(client, {"id": 424242, "event": "case.completed"}).json() == {
        "status": "processed",
        "event_id": "424242",
    }
    answer = post_event(client, {"id": "424242", "event": "case.completed"}).json()
    assert answer == {"status": "already_processed", "event_id": "424242"}
    assert len(handlers.calls) == 2  # the typed and the catch-all receiver, once each


def test_an_integrity_error_after_the_commit_does_not_fail_the_committed_event(client, handlers):
    # An on_commit callback that raises IntegrityError runs after the COMMIT: the event is
    # processed, and no failure record may overwrite it.
    from django.db import IntegrityError, transaction

    def raise_after_commit():
        raise IntegrityError("a callback's own write failed")

    handlers.on_call = lambda event: transaction.on_commit(raise_after_commit)
    response = post_event(client, case_completed())
    assert (response.status_code, response.json()["status"]) == (200, "processed")
    event = Event.objects.get()
    assert (event.status, event.attempts, event.error) == ("processed", 1, "")
