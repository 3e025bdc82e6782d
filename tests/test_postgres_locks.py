"""PostgreSQL: what a delivery does while another transaction holds a lock it could wait on.

Each test holds the lock in a second connection (a real concurrent transaction) and checks
the delivery's answer, which comes while the lock is still held: a redelivery never waits
on work running elsewhere. A delivery that waited would hang until the other transaction
ends, which these tests only do after the answer came.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, connections

from django_klarefi.locks import ADVISORY_LOCK_CLASS
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.testing import post_event
from tests.testapp.models import EventNote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


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


def test_a_row_being_updated_elsewhere_does_not_block_a_redelivery(client, handlers):
    # A receiver that saves its event during a forced reprocess leaves the row updated
    # (not only locked) in an open transaction; a redelivery's INSERT would wait on it.
    post_event(client, case_completed())
    update = (
        "UPDATE django_klarefi_event SET error = 'being saved' WHERE event_id = %s",
        ["evt_lock"],
    )
    with open_transaction(update):
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


def test_an_integrity_error_that_is_not_a_duplicate_is_a_logged_500(client, handlers, caplog):
    # A constraint of the project's own, not the event id's uniqueness: no retry loop
    # that ends in 409 forever, but the error, logged with its traceback.
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE django_klarefi_event ADD CONSTRAINT no_forbidden_case "
            "CHECK (case_id <> 'forbidden')"
        )
    try:
        with caplog.at_level(logging.ERROR, logger="django_klarefi"):
            response = post_event(client, case_completed(case_id="forbidden"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE django_klarefi_event DROP CONSTRAINT no_forbidden_case")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error"}
    [record] = [r for r in caplog.records if r.name == "django_klarefi"]
    assert "no_forbidden_case" in record.exc_text
    assert not Event.objects.exists()
    assert handlers.calls == []


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
        thread.join(timeout=1)
        assert thread.is_alive()  # waiting on the unique index, as any INSERT would
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
