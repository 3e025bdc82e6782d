"""PostgreSQL: what a delivery does while another transaction holds a lock it could wait on.

Each test holds the lock in a second connection (a real concurrent transaction) and checks
the delivery's answer, which comes while the lock is still held: a redelivery never waits
on work running elsewhere. A delivery that waited would hang until the other transaction
ends, which these tests only do after the answer came.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import django
import pytest
from django.db import connection, connections
from django.db.models.signals import post_save, pre_save
from django.test import override_settings
from django.utils import timezone

from django_klarefi.locks import ADVISORY_LOCK_CLASS
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.storing import _insert_parts
from django_klarefi.testing import post_event
from tests.testapp.models import EventNote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

DUMMY_BACKEND = (
    "django.tasks.backends.dummy.DummyBackend"
    if django.VERSION >= (6, 0)
    else "django_tasks.backends.dummy.DummyBackend"
)


def case_completed(event_id="evt_lock", **extra):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1", **extra}


@contextmanager
def open_transaction(*statements: tuple[str, list[object]]) -> Iterator[None]:
    """Run ``statements`` in a transaction of another connection, held open for the block."""
    other = connection.copy()
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
        yield
    finally:
        other.rollback()
        other.close()


def test_a_row_pointing_at_the_event_does_not_block_redeliveries(client, handlers):
    post_event(client, case_completed())
    event = Event.objects.get()
    # Another transaction inserts a row with a foreign key to the event (KEY SHARE lock).
    insert_note = (
        f"INSERT INTO {EventNote._meta.db_table} (event_id) VALUES (%s)",
        [event.pk],
    )
    with open_transaction(insert_note):
        response = post_event(client, case_completed())
        assert response.json()["status"] == "already_processed"
        assert process_event(event, force=True).outcome == Outcome.PROCESSED
    event.refresh_from_db()
    assert (event.deliveries, event.attempts) == (2, 2)


def backends_waiting_on_a_lock() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def claim_held(event_id):
    return ("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [ADVISORY_LOCK_CLASS, event_id])


def test_a_new_event_claimed_elsewhere_answers_409(client, handlers):
    # The claim a first delivery holds while its handlers run.
    with open_transaction(claim_held("evt_lock")):
        response = post_event(client, case_completed())
    assert response.status_code == 409
    assert response.json() == {"status": "in_flight", "event_id": "evt_lock"}
    assert not Event.objects.exists()
    assert handlers.calls == []


def test_a_processed_event_claimed_elsewhere_is_counted_not_409(client, handlers):
    # Two redeliveries overlapping: one holds the claim for a moment, the other still
    # counts itself on the processed row.
    post_event(client, case_completed())
    with open_transaction(claim_held("evt_lock")):
        response = post_event(client, case_completed())
    assert (response.status_code, response.json()["status"]) == (200, "already_processed")
    assert Event.objects.get().deliveries == 2


@pytest.mark.parametrize("processing", ["sync", "task"])
def test_a_row_being_updated_elsewhere_does_not_block_a_redelivery(client, handlers, processing):
    # A receiver that saves its event during a forced reprocess leaves the row updated
    # (not only locked) in an open transaction; a redelivery's INSERT would wait on it. In
    # task mode too: its statement claims the id as sync mode's does.
    post_event(client, case_completed())
    tasks = {"KLAREFI_PROCESSING": "task", "TASKS": {"default": {"BACKEND": DUMMY_BACKEND}}}
    stack = contextlib.ExitStack()
    if processing == "task":
        stack.enter_context(override_settings(**tasks))
    update = (
        "UPDATE django_klarefi_event SET error = 'being saved' WHERE event_id = %s",
        ["evt_lock"],
    )
    with stack, open_transaction(update):
        response = post_event(client, case_completed())
    assert response.status_code == 409
    assert response.json()["status"] == "in_flight"


def test_a_receiver_saving_its_event_during_a_reprocess_does_not_block_a_redelivery(
    client, handlers
):
    post_event(client, case_completed())
    event = Event.objects.get()
    saved, release = threading.Event(), threading.Event()
    results = []

    def save_and_hold(received):
        received.save()
        saved.set()
        release.wait(timeout=30)

    def reprocess():
        try:
            results.append(process_event(event, force=True))
        finally:
            connections.close_all()

    handlers.on_call = save_and_hold
    thread = threading.Thread(target=reprocess)
    thread.start()
    try:
        assert saved.wait(timeout=30)
        handlers.on_call = None
        response = post_event(client, case_completed())
        # Answered while the reprocess's receiver still holds.
        assert not release.is_set()
        assert thread.is_alive()
    finally:
        release.set()
        thread.join(timeout=60)
    assert response.status_code == 409
    assert response.json()["status"] == "in_flight"
    assert [result.outcome for result in results] == [Outcome.PROCESSED]


def test_a_row_committed_after_the_delivery_looked_is_counted_on(client, handlers):
    # Another writer (no claim: a project's import, say) has inserted the event's row,
    # uncommitted. The delivery's one statement sees no row, takes the claim and tries
    # the INSERT, which waits on the unique index; the other commits; the INSERT's
    # unique violation then means "stored", and the delivery is counted on that row.
    other = connection.copy()
    other.set_autocommit(False)
    results = []

    def deliver():
        try:
            results.append(post_event(client, case_completed("evt_late")))
        finally:
            connections.close_all()

    thread = threading.Thread(target=deliver)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_klarefi_event (event_id, event_type, case_id, session_id,"
                " payload, status, error, attempts, deliveries, is_test, received_at,"
                " last_received_at) VALUES (%s, 'case.completed', '', '', '{}', 'processed',"
                " '', 1, 1, false, now(), now())",
                ["evt_late"],
            )
        thread.start()
        # The delivery's statement waits on the unique index (for the other transaction),
        # as any INSERT would; only then does the other commit.
        assert wait_for(lambda: backends_waiting_on_a_lock() == 1)
        other.commit()
        thread.join(timeout=30)
    finally:
        other.rollback()
        other.close()
    [response] = results
    assert (response.status_code, response.json()["status"]) == (200, "already_processed")
    event = Event.objects.get()
    assert (event.deliveries, event.attempts, event.payload) == (2, 1, {})
    assert handlers.calls == []


def test_a_409_sends_no_save_signals(client, handlers):
    # With a pre_save receiver the INSERT is a statement of its own, after the claim: a
    # delivery that inserts nothing sends neither signal.
    sent = []

    def record(sender, **kwargs):
        sent.append(kwargs["signal"])

    pre_save.connect(record, sender=Event, weak=False)
    post_save.connect(record, sender=Event, weak=False)
    try:
        with open_transaction(claim_held("evt_lock")):
            response = post_event(client, case_completed())
    finally:
        pre_save.disconnect(record, sender=Event)
        post_save.disconnect(record, sender=Event)
    assert response.status_code == 409
    assert sent == []


def test_djangos_insert_has_the_shape_the_one_statement_builds_on():
    # storing builds its one statement from Django's compiled one-row INSERT; were its
    # shape to change in a Django release, the INSERT would become a statement of its own
    # (correct, one round trip dearer). This pins the shape on every Django tox runs.
    now = timezone.now()
    event = Event(event_id="evt_shape", event_type="case.completed", payload={},
                  received_at=now, last_received_at=now)  # fmt: skip
    parts = _insert_parts(connection, event)
    assert parts is not None
    columns, values, params = parts
    assert columns.startswith('INSERT INTO "django_klarefi_event" ("event_id", ')
    assert values == ", ".join(["%s"] * len(params))


def test_a_failure_is_left_to_the_delivery_that_holds_the_claim(client, handlers):
    # The first delivery's handler fails; by the time its failure record would insert the
    # row, a redelivery has claimed the id (and, in life, inserted its own row, whose
    # INSERT would make this one wait for its handlers). The failure is left to it.
    claimed, release = threading.Event(), threading.Event()
    main_connection = connection

    def take_the_claim_when_released():
        holder = main_connection.copy()
        holder.set_autocommit(False)
        try:
            with holder.cursor() as cursor:  # waits until the first delivery rolls back
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    [ADVISORY_LOCK_CLASS, "evt_lock"],
                )
            claimed.set()
            release.wait(timeout=30)
        finally:
            holder.rollback()
            holder.close()

    waiter = threading.Thread(target=take_the_claim_when_released)

    def fail_once_the_claim_is_awaited(event):
        waiter.start()
        assert wait_for(lambda: backends_waiting_on_a_lock() == 1)
        raise RuntimeError("handler failed")

    handlers.on_call = fail_once_the_claim_is_awaited
    try:
        response = post_event(client, case_completed())
        assert claimed.wait(timeout=30)
    finally:
        release.set()
        waiter.join(timeout=30)
    assert response.status_code == 500
    assert response.json()["status"] == "failed"
    assert not Event.objects.exists()


@pytest.mark.parametrize("processing", ["sync", "task"])
def test_a_pre_save_receiver_runs_while_the_claim_is_held(client, handlers, processing):
    # With a pre_save receiver the INSERT is save(), after the claim's statement: in task
    # mode too, both are in one transaction, so the claim still covers the INSERT.
    held = []

    def count_claims(sender, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND classid = %s",
                [ADVISORY_LOCK_CLASS],
            )
            held.append(cursor.fetchone()[0])

    tasks = {"KLAREFI_PROCESSING": "task", "TASKS": {"default": {"BACKEND": DUMMY_BACKEND}}}
    pre_save.connect(count_claims, sender=Event, weak=False)
    try:
        with override_settings(**tasks) if processing == "task" else contextlib.nullcontext():
            response = post_event(client, case_completed())
    finally:
        pre_save.disconnect(count_claims, sender=Event)
    assert response.status_code in (200, 202)
    assert held == [1]


def test_a_processed_row_locked_for_a_moment_is_counted_again_not_409(client, handlers):
    # Two redeliveries at once: the other one's count holds the row's lock until its
    # COMMIT. This one's statement skips the locked row; it counts again (in autocommit)
    # before its NOWAIT lock would answer 409. Here the other commits just before that.
    post_event(client, case_completed())
    other = connection.copy()
    other.set_autocommit(False)
    with other.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM django_klarefi_event WHERE event_id = %s FOR NO KEY UPDATE",
            ["evt_lock"],
        )

    def commit_the_other_before_the_recount(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and not context["connection"].in_atomic_block:
            other.commit()
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(commit_the_other_before_the_recount):
            response = post_event(client, case_completed())
    finally:
        other.rollback()
        other.close()
    assert (response.status_code, response.json()["status"]) == (200, "already_processed")
    assert Event.objects.get().deliveries == 2
