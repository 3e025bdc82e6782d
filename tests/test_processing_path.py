"""The one processing path: what receivers see, and what is recorded when anything fails,
up to and including the COMMIT (SQLite and PostgreSQL)."""

from __future__ import annotations

import ast
import contextlib
import logging
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.signals import post_save, pre_save
from django.test import override_settings
from django.utils import timezone

import django_klarefi
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.testing import post_event
from tests.testapp.models import HandlerRecord, HandlerRecordNote

pytestmark = pytest.mark.django_db(transaction=True)


def immediate_task_mode():
    import django

    framework = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    return override_settings(
        KLAREFI_PROCESSING="task",
        TASKS={"default": {"BACKEND": f"{framework}.backends.immediate.ImmediateBackend"}},
    )


def case_completed(event_id="evt_path", **extra):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1", **extra}


class Seen:
    """Records what a receiver sees at the moment it runs (the Event object is shared, so
    reading it afterwards would show the final state instead)."""

    def __init__(self, handlers):
        self.states: list[tuple[str, int, str, bool]] = []
        handlers.on_call = self.record

    def record(self, event):
        self.states.append(
            (event.status, event.attempts, event.error, event.processed_at is not None)
        )

    def attempts(self):
        return [attempts for _, attempts, _, _ in self.states]


# -- What a receiver sees, on every path ------------------------------------------------


def test_first_delivery_receivers_see_attempt_one_as_processed(client, handlers):
    states = Seen(handlers)
    assert post_event(client, case_completed()).status_code == 200
    assert states.states == [("processed", 1, "", True)] * 2


@pytest.mark.parametrize(
    "reprocess",
    ["redelivery", "process_event", "klarefi_reprocess", "admin action", "task"],
)
def test_every_path_shows_receivers_the_same_state(client, handlers, admin_client, reprocess):
    states = Seen(handlers)
    handlers.fail_with = RuntimeError("first attempt fails")
    assert post_event(client, case_completed()).status_code == 500
    handlers.fail_with = None
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("failed", 1)

    if reprocess == "redelivery":
        assert post_event(client, case_completed()).json()["status"] == "processed"
    elif reprocess == "process_event":
        assert process_event(event).outcome == Outcome.PROCESSED
    elif reprocess == "klarefi_reprocess":
        call_command("klarefi_reprocess", "--failed", verbosity=0)
    elif reprocess == "admin action":
        admin_client.post(
            "/admin/django_klarefi/event/",
            {"action": "reprocess_events", "_selected_action": [event.pk]},
        )
    else:
        # Task mode: a redelivery queues the failed event, the task runs process_event.
        with immediate_task_mode():
            assert post_event(client, case_completed()).json()["status"] == "queued"

    # Both receivers (typed, then catch-all) on each attempt; the first attempt's failure
    # is the typed receiver's own, so the catch-all did not run then.
    assert states.states == [
        ("processed", 1, "", True),
        ("processed", 2, "", True),
        ("processed", 2, "", True),
    ]
    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == ("processed", 2, "")


def test_forced_reprocess_counts_its_attempt(client, handlers):
    states = Seen(handlers)
    post_event(client, case_completed())
    event = Event.objects.get()
    assert process_event(event, force=True).outcome == Outcome.PROCESSED
    assert states.attempts() == [1, 1, 2, 2]
    event.refresh_from_db()
    assert event.attempts == 2


def test_processing_does_not_import_the_task_module():
    source = Path(django_klarefi.__file__).with_name("processing.py").read_text()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and "tasks" in name}


# -- Failures up to and including COMMIT -------------------------------------------------


def note_for_a_missing_record(event):
    """A handler write that only fails at COMMIT: a deferred foreign key to nothing."""
    HandlerRecordNote.objects.create(record_id=10**9)


def test_an_error_at_commit_stores_the_event_as_failed_and_answers_json_500(
    client, handlers, caplog
):
    handlers.on_call = note_for_a_missing_record
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "failed", "event_id": "evt_path"}

    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("failed", 1, 1)
    assert "IntegrityError" in event.error
    assert event.processed_at is None
    # The handlers' writes were rolled back with the attempt.
    assert not HandlerRecord.objects.exists()
    assert not HandlerRecordNote.objects.exists()
    # Logged by its class: the traceback, which may quote payload values, is on the row.
    [logged] = [r for r in caplog.records if r.name.startswith("django_klarefi")]
    assert "failed with IntegrityError" in logged.getMessage()
    assert not logged.exc_info

    # The redelivery runs the handlers again; without the bad write they succeed.
    handlers.on_call = None
    assert post_event(client, case_completed()).json()["status"] == "processed"
    event.refresh_from_db()
    assert (event.status, event.attempts, event.deliveries, event.error) == (
        "processed",
        2,
        2,
        "",
    )
    assert HandlerRecord.objects.count() == 2


def test_an_error_at_commit_on_reprocess_is_recorded(client, handlers):
    post_event(client, case_completed())
    event = Event.objects.get()
    handlers.on_call = note_for_a_missing_record
    result = process_event(event, force=True)
    assert result.outcome == Outcome.FAILED
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("failed", 2)
    assert "IntegrityError" in event.error
    # The earlier successful attempt's start is kept; the failed one's is not recorded.
    assert event.processed_at is not None
    assert HandlerRecord.objects.count() == 2  # the first delivery's two receivers only


def test_an_error_at_commit_in_a_task_is_recorded(client, handlers):
    handlers.on_call = note_for_a_missing_record
    with immediate_task_mode():
        response = post_event(client, case_completed())
    # The ImmediateBackend runs the task in the request, after the INSERT committed.
    assert response.json()["status"] == "queued"
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("failed", 1)
    assert "IntegrityError" in event.error


def test_an_on_commit_callback_that_raises_does_not_fail_the_event(client, handlers, caplog):
    class CallbackError(Exception):
        pass

    def raise_after_commit():
        raise CallbackError("the callback failed")

    handlers.on_call = lambda event: transaction.on_commit(raise_after_commit)
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        response = post_event(client, case_completed())
    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    event = Event.objects.get()
    assert (event.status, event.attempts, event.error) == ("processed", 1, "")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    # Its frames and class, not its message (which can quote payload values).
    assert "on_commit" in record.getMessage()
    assert "raise_after_commit" in record.getMessage()
    assert "CallbackError" in record.getMessage()
    assert "message hidden" in record.getMessage()

    # A reprocess too: the attempt is committed as processed.
    assert process_event(event, force=True).outcome == Outcome.PROCESSED
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 2)


def test_a_failed_redelivery_stores_only_the_handlers_traceback(client, handlers, caplog):
    handlers.fail_with = RuntimeError("still broken")
    post_event(client, case_completed())
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        assert post_event(client, case_completed()).status_code == 500
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("failed", 2, 2)
    assert event.error.startswith("Traceback (most recent call last):")
    assert "RuntimeError: still broken" in event.error
    for text in (event.error, caplog.text):
        assert "AlreadyStored" not in text
        assert "During handling of the above exception" not in text
        assert "IntegrityError" not in text


# -- Rows that vanish ----------------------------------------------------------------------


def is_lock(sql):
    """Whether ``sql`` is processing's row lock: FOR ... NOWAIT on PostgreSQL, the UPDATE
    that changes nothing on SQLite."""
    return "NOWAIT" in sql or '"attempts" = "django_klarefi_event"."attempts"' in sql


def run_before_lock(sql_from_elsewhere, params, *, nth=1):
    """An execute wrapper that runs ``sql_from_elsewhere`` on another connection just before
    this connection's ``nth`` row lock (the attempt's is the first; a failure record's is the
    next), as the admin, klarefi_prune_events or another process might."""
    other = connection.copy()
    state = {"locks": 0, "ran": False}

    def wrapper(execute, sql, sql_params, many, context):
        if is_lock(sql):
            state["locks"] += 1
            if state["locks"] == nth:
                with other.cursor() as cursor:
                    cursor.execute(sql_from_elsewhere, params)
                other.close()
                state["ran"] = True
        return execute(sql, sql_params, many, context)

    return wrapper, state


def delete_before_the_lock(event_id, *, nth=1):
    return run_before_lock(
        "DELETE FROM django_klarefi_event WHERE event_id = %s", [event_id], nth=nth
    )


def test_an_event_deleted_before_the_redelivery_locks_it_is_stored_again(client, handlers):
    handlers.fail_with = RuntimeError("first attempt fails")
    post_event(client, case_completed())
    handlers.fail_with = None
    wrapper, state = delete_before_the_lock("evt_path")
    with connection.execute_wrapper(wrapper):
        response = post_event(client, case_completed())
    assert state["ran"]
    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    event = Event.objects.get()
    # Stored again as new: this delivery is its first.
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 1)


def test_an_event_deleted_before_its_reprocess_locks_it_is_missing(client, handlers):
    post_event(client, case_completed())
    event = Event.objects.get()
    wrapper, state = delete_before_the_lock("evt_path")
    with connection.execute_wrapper(wrapper):
        result = process_event(event, force=True)
    assert state["ran"]
    assert result.outcome == Outcome.MISSING
    assert not Event.objects.exists()


def test_a_failure_recorded_after_the_row_vanished_stores_it_again(client, handlers):
    post_event(client, case_completed())
    event = Event.objects.get()
    # Deleted after the attempt rolled back, before its failure is recorded.
    wrapper, state = delete_before_the_lock("evt_path", nth=2)
    handlers.fail_with = RuntimeError("failed while the row was being deleted")
    with connection.execute_wrapper(wrapper):
        result = process_event(event, force=True)
    assert state["ran"]
    assert result.outcome == Outcome.FAILED
    stored = Event.objects.get()
    assert (stored.status, stored.attempts) == ("failed", 2)
    assert "failed while the row was being deleted" in stored.error
    assert result.attempt == stored.attempts


def test_a_success_elsewhere_after_this_attempt_began_is_not_overwritten(client, handlers):
    # The first delivery's handlers fail. Before its failure is recorded, another process
    # stores the event and processes it (a redelivery on another web worker): the late
    # failure record counts this attempt and delivery, and leaves the event processed.
    handlers.fail_with = RuntimeError("this attempt fails")
    wrapper, state = run_before_lock(
        "INSERT INTO django_klarefi_event (event_id, event_type, case_id, session_id, payload,"
        " status, error, attempts, deliveries, is_test, received_at, last_received_at,"
        " processed_at) VALUES (%s, 'case.completed', '', '', '{}', 'processed', '', 1, 1,"
        " FALSE, %s, %s, %s)",
        ["evt_path", *[timezone.now()] * 3],
    )
    with connection.execute_wrapper(wrapper):
        response = post_event(client, case_completed())
    assert state["ran"]
    assert response.status_code == 500
    event = Event.objects.get()
    assert (event.status, event.error, event.attempts, event.deliveries) == (
        "processed",
        "",
        2,
        2,
    )


def test_a_swallowed_database_error_fails_the_event_instead_of_losing_it(client, handlers):
    def swallow(event):
        if handlers.names[-1] != "event_received":
            return  # only the last receiver, so that no later query trips over it
        # No atomic block of its own: the error dooms the whole transaction.
        with contextlib.suppress(IntegrityError):
            HandlerRecord.objects.create(id=HandlerRecord.objects.first().id, event_id="dup")

    handlers.on_call = swallow
    response = post_event(client, case_completed())
    assert response.status_code == 500
    event = Event.objects.get()
    assert event.status == "failed"
    assert "TransactionManagementError" in event.error
    assert "a transaction.atomic() block of its own" in event.error


def test_set_rollback_in_a_receiver_fails_the_event(client, handlers):
    def roll_back(event):
        if handlers.names[-1] == "event_received":  # the last receiver
            transaction.set_rollback(True)

    handlers.on_call = roll_back
    assert post_event(client, case_completed()).status_code == 500
    assert Event.objects.get().status == "failed"
    assert not HandlerRecord.objects.exists()


@pytest.mark.postgres
def test_a_swallowed_error_of_a_raw_query_fails_the_event(client, handlers):
    def swallow(event):
        if handlers.names[-1] != "event_received":
            return
        # psycopg raises nothing at COMMIT of an aborted transaction: PostgreSQL answers
        # the COMMIT with a ROLLBACK.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")

    handlers.on_call = swallow
    assert post_event(client, case_completed()).status_code == 500
    event = Event.objects.get()
    assert event.status == "failed"
    assert "TransactionManagementError" in event.error


def test_a_failure_whose_message_quotes_nul_text_is_stored(client, handlers):
    def fail_quoting(event):
        raise ValueError("could not parse " + event.payload["text"])

    handlers.on_call = fail_quoting
    response = post_event(client, case_completed(text="page\x001"))
    assert response.status_code == 500
    assert response.json()["status"] == "failed"
    event = Event.objects.get()
    assert "could not parse page\ufffd1" in event.error
    assert event.payload["text"] == "page\x001"


@pytest.mark.parametrize("connected", [("pre_save", "post_save"), ("post_save",)])
def test_save_signals_are_sent_for_the_insert_only(client, handlers, connected):
    # The row is written by a statement of the library's own, not Model.save() (on
    # PostgreSQL; with a pre_save receiver connected, the INSERT is one of its own): the
    # signals are still sent, as save() sends them, and only when a row is inserted.
    sent = []
    signals = {"pre_save": pre_save, "post_save": post_save}

    def receiver(name):
        def record(sender, **kwargs):
            sent.append((name, kwargs.get("created"), kwargs["instance"].pk is not None))

        return record

    receivers = {name: receiver(name) for name in connected}
    for name, function in receivers.items():
        signals[name].connect(function, sender=Event, weak=False)
    try:
        post_event(client, case_completed())
        new = list(sent)
        sent.clear()
        post_event(client, case_completed())  # a redelivery: nothing is inserted
    finally:
        for name, function in receivers.items():
            signals[name].disconnect(function, sender=Event)
    expected = {"pre_save": ("pre_save", None, False), "post_save": ("post_save", True, True)}
    assert new == [expected[name] for name in connected]
    assert sent == []
    assert Event.objects.get().deliveries == 2


@contextlib.contextmanager
def schema_of_the_projects_own(*, postgresql: tuple[list[str], list[str]],
                               sqlite: tuple[list[str], list[str]]):  # fmt: skip
    """Run this database's (statements, undo statements) around the block: a constraint
    or trigger a project has added to the events table."""
    statements, undo = postgresql if connection.vendor == "postgresql" else sqlite
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in undo:
                cursor.execute(statement)


# No case_id 'forbidden': a CHECK on PostgreSQL, a trigger that aborts on SQLite.
FORBIDDEN_CASE = {
    "postgresql": (
        [
            "ALTER TABLE django_klarefi_event ADD CONSTRAINT no_forbidden_case "
            "CHECK (case_id <> 'forbidden')"
        ],
        ["ALTER TABLE django_klarefi_event DROP CONSTRAINT no_forbidden_case"],
    ),
    "sqlite": (
        [
            "CREATE TRIGGER no_forbidden_case BEFORE INSERT ON django_klarefi_event "
            "WHEN NEW.case_id = 'forbidden' BEGIN SELECT RAISE(ABORT, 'no_forbidden_case'); END"
        ],
        ["DROP TRIGGER no_forbidden_case"],
    ),
}

# Every INSERT of an event silently discarded.
DISCARDED_INSERTS = {
    "postgresql": (
        [
            "CREATE FUNCTION discard_event() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NULL; END $$",
            "CREATE TRIGGER discard_event BEFORE INSERT ON django_klarefi_event "
            "FOR EACH ROW EXECUTE FUNCTION discard_event()",
        ],
        ["DROP TRIGGER discard_event ON django_klarefi_event", "DROP FUNCTION discard_event()"],
    ),
    "sqlite": (
        [
            "CREATE TRIGGER discard_event BEFORE INSERT ON django_klarefi_event "
            "BEGIN SELECT RAISE(IGNORE); END"
        ],
        ["DROP TRIGGER discard_event"],
    ),
}


@pytest.mark.django_db(transaction=True)
def test_another_constraints_violation_is_not_taken_for_a_stored_event(client, handlers, caplog):
    # Only a stored event id is a redelivery: any other constraint's violation at the
    # INSERT is a logged 500, not a 409 that Klarefi would retry forever, nor a silent 200.
    with (
        schema_of_the_projects_own(**FORBIDDEN_CASE),
        caplog.at_level(logging.ERROR, logger="django_klarefi"),
    ):
        response = post_event(client, case_completed(case_id="forbidden"))
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error"}
    [record] = [r for r in caplog.records if r.name.startswith("django_klarefi")]
    assert "no_forbidden_case" in record.exc_text
    assert not Event.objects.exists()
    assert handlers.calls == []


def test_an_insert_discarded_by_a_trigger_is_a_logged_500_not_a_200(client, handlers, caplog):
    # Nothing stored, so nothing may be answered 2xx, and no handler may run as if it was.
    with (
        schema_of_the_projects_own(**DISCARDED_INSERTS),
        caplog.at_level(logging.ERROR, logger="django_klarefi"),
    ):
        response = post_event(client, case_completed())
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error"}
    assert [r.levelname for r in caplog.records if r.name.startswith("django_klarefi")] == ["ERROR"]
    assert not Event.objects.exists()
    assert handlers.calls == []


def test_a_failed_events_redelivery_tries_no_insert(client, handlers):
    # The stored row is failed, not processed: the delivery runs it again (an UPDATE of the
    # row, with its save signals), but never tries, and rolls back, an INSERT of it.
    handlers.fail_with = RuntimeError("first attempt fails")
    post_event(client, case_completed())
    handlers.fail_with = None
    inserts = []

    def record(sender, instance, update_fields=None, **kwargs):
        if update_fields is None:
            inserts.append(instance.event_id)

    pre_save.connect(record, sender=Event, weak=False)
    try:
        response = post_event(client, case_completed())
    finally:
        pre_save.disconnect(record, sender=Event)
    assert response.json()["status"] == "processed"
    assert inserts == []
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 2, 2)
