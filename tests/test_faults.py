"""Faults through a real gunicorn: failing handlers, a database that goes away, and
``ATOMIC_REQUESTS``. Klarefi retries every non-2xx answer, so the claims are: no answer
says 200 for an event that is not safely stored, nothing half-written is left, and the
redelivery after the fault processes the event exactly once.

The database is taken away without touching the shared PostgreSQL server: the server
under test connects through a TCP proxy that the test cuts (``tests.raceapp.proxy``), or
to a port where nothing listens.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from django_klarefi.models import Event
from tests.pgbouncer import ROUTES
from tests.raceapp.delivery import Answer, Delivery, post, wait_for
from tests.raceapp.handlers import committed_runs, handler_runs, race_payload
from tests.raceapp.proxy import CuttableProxy
from tests.servers import free_port, gunicorn
from tests.testapp.models import HandlerRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("settings_module", ["tests.settings_races", "tests.settings_races_atomic"])
def test_handler_that_fails_once_is_stored_failed_and_processed_on_redelivery(
    tmp_path, settings_module
):
    """Also under ATOMIC_REQUESTS = True: the failed row and its traceback survive."""
    log, fixed = tmp_path / "runs.log", tmp_path / "fixed"
    delivery = Delivery.of(race_payload("evt_flaky", log, fail_unless=fixed))

    with gunicorn(workers=2, settings_module=settings_module) as base:
        first = post(base, delivery)
        assert first.status == 500
        assert first.json == {"status": "failed", "event_id": "evt_flaky"}
        assert b"Traceback" not in first.body
        assert "Retry-After" not in first.headers

        event = Event.objects.get()
        assert (event.status, event.attempts, event.deliveries) == ("failed", 1, 1)
        assert event.error.startswith("Traceback (most recent call last):")
        assert "RaceHandlerError: handler failed on purpose" in event.error
        # The handler wrote a HandlerRecord before raising: rolled back with its attempt.
        assert committed_runs("evt_flaky") == 0
        assert handler_runs(log) == {"evt_flaky": 1}

        fixed.touch()
        second = post(base, delivery)
        assert (second.status, second.json["status"]) == (200, "processed")
        third = post(base, delivery)
        assert (third.status, third.json["status"]) == (200, "already_processed")

    event.refresh_from_db()
    assert (event.status, event.attempts, event.deliveries, event.error) == (
        "processed",
        2,
        3,
        "",
    )
    assert committed_runs("evt_flaky") == 1
    assert handler_runs(log) == {"evt_flaky": 2}


def assert_retry_later(answer: Answer) -> None:
    assert answer.status == 503
    assert answer.json == {"error": "database_unavailable"}
    assert answer.headers["Retry-After"]


@pytest.mark.postgres
def test_database_on_a_closed_port_answers_503_and_still_rejects_forgeries(tmp_path):
    delivery = Delivery.of(race_payload("evt_no_db", tmp_path / "runs.log"))
    with gunicorn(
        workers=1, settings_module="tests.settings_races", env={"KLAREFI_PG_PORT": str(free_port())}
    ) as base:
        assert_retry_later(post(base, delivery))
        # Verification needs no database: a forgery is still a 401, not a 503.
        forged = post(base, Delivery(delivery.body, "t=1,v1=" + "0" * 64))
        assert forged.status == 401
    assert not Event.objects.exists()
    assert not handler_runs(tmp_path / "runs.log")


@pytest.mark.postgres
@pytest.mark.parametrize("servers_database", ROUTES, indirect=True)
def test_database_going_away_answers_503_leaves_nothing_and_recovers(tmp_path, servers_database):
    """Also behind PgBouncer in transaction pooling mode (the proxy in front of PgBouncer)."""
    log, release = tmp_path / "runs.log", tmp_path / "release"
    before = Delivery.of(race_payload("evt_before", log))
    during = Delivery.of(race_payload("evt_during", log))
    midway = Delivery.of(race_payload("evt_midway", log, hold_until=release))

    with CuttableProxy(servers_database) as proxy, contextlib.ExitStack() as stack:
        stack.callback(release.touch)
        base = stack.enter_context(
            gunicorn(
                workers=2,
                settings_module="tests.settings_races",
                env={"KLAREFI_PG_PORT": str(proxy.port)},
            )
        )
        assert post(base, before).status == 200

        # Down between deliveries: a new event and a redelivery both ask to retry later.
        proxy.cut()
        assert_retry_later(post(base, during))
        assert_retry_later(post(base, before))

        # Down in the middle of a delivery: after the INSERT and the handler's write,
        # before the commit.
        proxy.restore()
        answers: list[Answer] = []
        thread = threading.Thread(target=lambda: answers.append(post(base, midway)))
        thread.start()
        wait_for(lambda: handler_runs(log)["evt_midway"] == 1, what="the handler to start")
        proxy.cut()
        release.touch()
        thread.join(timeout=60)
        [cut_short] = answers
        assert_retry_later(cut_short)

        # Nothing half-written: no row and no handler write for either event.
        assert set(Event.objects.values_list("event_id", flat=True)) == {"evt_before"}
        assert set(HandlerRecord.objects.values_list("event_id", flat=True)) == {"evt_before"}

        # The database returns: Klarefi's redeliveries are processed, once each.
        proxy.restore()
        for delivery, event_id in ((during, "evt_during"), (midway, "evt_midway")):
            answer = post(base, delivery)
            assert answer.json == {"status": "processed", "event_id": event_id}
        assert post(base, before).json["status"] == "already_processed"

    events = {event.event_id: event for event in Event.objects.all()}
    assert set(events) == {"evt_before", "evt_during", "evt_midway"}
    assert all(event.status == "processed" and event.attempts == 1 for event in events.values())
    assert events["evt_before"].deliveries == 2
    for event_id in events:
        assert committed_runs(event_id) == 1
    # The handler ran twice for evt_midway: the run cut short was rolled back entirely.
    assert handler_runs(log) == {"evt_before": 1, "evt_during": 1, "evt_midway": 2}
