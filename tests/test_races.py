"""Concurrent deliveries through a real gunicorn with several workers, in both modes.

The claims: one row per event however many deliveries race, handlers run exactly once
and never concurrently for one event, no delivery is answered 500, and the only non-2xx
answers are the documented retry-later ones (409, 503), which Klarefi retries.

Handlers run in the server (and worker) processes, connected by ``tests.raceapp``; each
run writes a ``HandlerRecord`` and appends a line to a log file, so runs are counted in
the database and outside it.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import connection, connections

from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.signals import event_received
from tests.pgbouncer import BEHIND_PGBOUNCER
from tests.raceapp.delivery import (
    RETRY_LATER,
    Answer,
    Delivery,
    post,
    post_all,
    post_until_accepted,
    wait_for,
)
from tests.raceapp.handlers import committed_runs, handler_runs, race_handler, race_payload
from tests.servers import django_process, gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ON_POSTGRES = os.environ.get("KLAREFI_TEST_DB") == "postgres"
# Several workers on PostgreSQL; on SQLite, the case: 2 workers, 8 connections.
WORKERS = 4 if ON_POSTGRES else 2
CONCURRENCY = 50 if ON_POSTGRES else 8
SETTINGS = {"sync": "tests.settings_races", "task": "tests.settings_races_tasks"}
TASK_TABLE = "django_tasks_database_dbtaskresult"
MODES = ["sync", pytest.param("task", marks=pytest.mark.postgres)]
# The documented retry-later answers; SQLite has no row locks, so never 409 there.
ALLOWED = {200} | (RETRY_LATER if ON_POSTGRES else {503})


def prepare_task_tables() -> None:
    """Create django-tasks-db's table in the test database (once), and empty it."""
    with django_process("migrate", "--noinput", settings_module=SETTINGS["task"]) as migrate:
        assert migrate.wait(timeout=180) == 0
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TASK_TABLE}")


def drain_task_queue() -> None:
    """Run every task still queued, with a worker that exits when the queue is empty."""
    with django_process(
        "db_worker",
        "--batch",
        "--no-startup-delay",
        "--queue-name",
        "*",
        settings_module=SETTINGS["task"],
    ) as worker:
        assert worker.wait(timeout=180) == 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TASK_TABLE} WHERE status IN ('READY', 'RUNNING')")
        assert cursor.fetchone() == (0,)


@contextlib.contextmanager
def receiver(mode: str, *, workers: int = WORKERS) -> Iterator[str]:
    """gunicorn on 127.0.0.1 in ``mode``; in task mode, two db_workers run meanwhile and
    the queue is drained on exit."""
    settings_module = SETTINGS[mode]
    with contextlib.ExitStack() as stack:
        if mode == "task":
            prepare_task_tables()
            for _ in range(2):
                stack.enter_context(
                    django_process(
                        "db_worker",
                        "--interval",
                        "0.05",
                        "--no-startup-delay",
                        "--queue-name",
                        "*",
                        settings_module=settings_module,
                    )
                )
        yield stack.enter_context(gunicorn(workers=workers, settings_module=settings_module))
    if mode == "task":
        drain_task_queue()


@pytest.mark.parametrize(
    ("mode", "servers_database"),
    [
        ("sync", "direct"),
        pytest.param("task", "direct", marks=pytest.mark.postgres),
        pytest.param("sync", "pgbouncer", marks=BEHIND_PGBOUNCER),
    ],
    indirect=["servers_database"],
)
def test_concurrent_deliveries_of_one_event_store_and_run_it_once(mode, tmp_path, servers_database):
    """Also with the servers behind PgBouncer in transaction pooling mode: the claim holds."""
    log = tmp_path / "runs.log"
    delivery = Delivery.of(race_payload("evt_same", log, sleep=0.2))

    with receiver(mode) as base:
        answers = post_all(base, [delivery] * 50, concurrency=CONCURRENCY)

    statuses = Counter(answer.status for answer in answers)
    assert 500 not in statuses
    assert set(statuses) <= ALLOWED, statuses
    accepted = statuses[200]
    assert accepted >= 1
    for answer in answers:
        if answer.status in RETRY_LATER:
            assert answer.headers["Retry-After"]
    event = Event.objects.get()
    assert event.event_id == "evt_same"
    assert event.status == Event.Status.PROCESSED
    assert event.deliveries == accepted
    assert event.attempts == 1
    assert committed_runs("evt_same") == 1
    assert handler_runs(log) == {"evt_same": 1}


@pytest.mark.parametrize("mode", MODES)
def test_distinct_events_mixed_with_duplicates_are_each_processed_once(mode, tmp_path):
    log = tmp_path / "runs.log"
    rng = random.Random(4)
    events = {
        f"evt_mix_{n}": Delivery.of(race_payload(f"evt_mix_{n}", log, sleep=0.05))
        for n in range(30)
    }
    deliveries = [d for d in events.values() for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    by_body = {d.body: event_id for event_id, d in events.items()}

    with receiver(mode) as base:
        answers = post_all(base, deliveries, concurrency=min(CONCURRENCY, 16))
        # Klarefi retries whatever was answered "retry later"; so does the test.
        for event_id, delivery in events.items():
            if not any(
                a.status == 200
                for d, a in zip(deliveries, answers, strict=True)
                if by_body[d.body] == event_id
            ):
                assert post_until_accepted(base, delivery).status == 200

    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= ALLOWED, statuses
    stored = {event.event_id: event for event in Event.objects.all()}
    assert set(stored) == set(events)
    for event_id, event in stored.items():
        assert event.status == Event.Status.PROCESSED
        assert event.attempts == 1
        assert committed_runs(event_id) == 1
    assert handler_runs(log) == dict.fromkeys(events, 1)
    accepted = Counter(
        by_body[d.body] for d, a in zip(deliveries, answers, strict=True) if a.status == 200
    )
    for event_id, event in stored.items():
        # Every 2xx delivery was counted, and only those (plus the retries above).
        assert event.deliveries >= accepted[event_id]


def locks_waited_on() -> int:
    """Sessions on this database waiting for a lock (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def test_sync_redelivery_during_a_slow_handler_is_not_run_again(tmp_path):
    """A redelivery never waits on the first delivery's handlers. PostgreSQL: it finds the
    event claimed and answers 409 at once. SQLite: the first delivery holds the write lock
    past the busy timeout, so the redelivery answers 503. Both mean retry later."""
    log, release = tmp_path / "runs.log", tmp_path / "release"
    delivery = Delivery.of(race_payload("evt_slow", log, hold_until=release))
    answers: dict[str, Answer] = {}

    with receiver("sync") as base, contextlib.ExitStack() as stack:
        stack.callback(release.touch)  # never leave a handler hanging
        first = threading.Thread(target=lambda: answers.update({"first": post(base, delivery)}))
        first.start()
        wait_for(lambda: handler_runs(log)["evt_slow"] == 1, what="the handler to start")
        busy = post(base, delivery)
        # Answered while the first delivery's handler still holds (no answer yet).
        assert "first" not in answers
        if ON_POSTGRES:
            assert busy.status == 409
            assert busy.json == {"status": "in_flight", "event_id": "evt_slow"}
        else:
            assert busy.status == 503
            assert busy.json == {"error": "database_unavailable"}
        assert busy.headers["Retry-After"]
        release.touch()
        first.join(timeout=60)
        answers["again"] = post(base, delivery)

    assert (answers["first"].status, answers["first"].json["status"]) == (200, "processed")
    assert (answers["again"].status, answers["again"].json["status"]) == (
        200,
        "already_processed",
    )
    event = Event.objects.get()
    # The retry-later answer was not counted as a delivery.
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 2)
    assert committed_runs("evt_slow") == 1
    assert handler_runs(log) == {"evt_slow": 1}


@pytest.mark.postgres
def test_redelivery_during_a_forced_reprocess_answers_at_once(tmp_path):
    """klarefi_reprocess --force holds the processed row's lock while a handler sleeps
    5 s; a redelivery meanwhile answers 409 at once, instead of blocking a web worker on
    the lock for the whole handler run."""
    log = tmp_path / "runs.log"
    delivery = Delivery.of(race_payload("evt_forced", log, sleep=5))

    with receiver("sync") as base:
        first = post(base, delivery)
        assert (first.status, first.json["status"]) == (200, "processed")
        with django_process(
            "klarefi_reprocess", "--event-id", "evt_forced", "--force",
            settings_module=SETTINGS["sync"],
        ) as reprocess:  # fmt: skip
            wait_for(lambda: handler_runs(log)["evt_forced"] == 2, what="the reprocess to start")
            again = post(base, delivery)
            # Answered while the reprocess's handler is still sleeping.
            assert reprocess.poll() is None
            assert again.status == 409
            assert again.json == {"status": "in_flight", "event_id": "evt_forced"}
            assert again.headers["Retry-After"]
            assert reprocess.wait(timeout=60) == 0
        later = post(base, delivery)
        assert (later.status, later.json["status"]) == (200, "already_processed")

    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 2, 2)
    assert handler_runs(log) == {"evt_forced": 2}


@pytest.mark.postgres
def test_task_redelivery_during_a_slow_task_gets_409_and_is_not_run_again(tmp_path):
    log, release = tmp_path / "runs.log", tmp_path / "release"
    delivery = Delivery.of(race_payload("evt_slow_task", log, hold_until=release))

    with receiver("task") as base, contextlib.ExitStack() as stack:
        stack.callback(release.touch)
        first = post(base, delivery)
        assert (first.status, first.json["status"]) == (200, "queued")
        wait_for(lambda: handler_runs(log)["evt_slow_task"] == 1, what="the task to start")
        again = post(base, delivery)
        assert again.status == 409
        assert again.json["status"] == "in_flight"
        assert again.headers["Retry-After"]
        release.touch()
        wait_for(
            lambda: Event.objects.filter(status=Event.Status.PROCESSED).exists(),
            what="the task to finish",
        )
        later = post(base, delivery)
        assert (later.status, later.json["status"]) == (200, "already_processed")

    event = Event.objects.get()
    assert (event.status, event.attempts) == ("processed", 1)
    # The first delivery and the one after processing; the 409 was not counted.
    assert event.deliveries == 2
    assert committed_runs("evt_slow_task") == 1
    assert handler_runs(log) == {"evt_slow_task": 1}


@contextlib.contextmanager
def race_handler_here() -> Iterator[None]:
    """Connect the raceapp handler in this (the test's) process too."""
    event_received.connect(race_handler, dispatch_uid="tests-raceapp-here")
    try:
        yield
    finally:
        event_received.disconnect(dispatch_uid="tests-raceapp-here")


def process_in_thread(event_id: str, results: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(process_event(Event.objects.get(event_id=event_id)))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("reprocess_by", "servers_database"),
    [
        ("redelivery", "direct"),
        ("process_event", "direct"),
        pytest.param("redelivery", "pgbouncer", marks=BEHIND_PGBOUNCER),
    ],
    indirect=["servers_database"],
)
def test_redelivery_while_a_failed_event_is_reprocessed_gets_409(
    tmp_path, reprocess_by, servers_database
):
    """Also with the server behind PgBouncer in transaction pooling mode: the row lock holds."""
    log, fixed, release = tmp_path / "runs.log", tmp_path / "fixed", tmp_path / "release"
    delivery = Delivery.of(race_payload("evt_retry", log, fail_unless=fixed, hold_until=release))

    with receiver("sync") as base, race_handler_here(), contextlib.ExitStack() as stack:
        stack.callback(release.touch)
        failed = post(base, delivery)
        assert (failed.status, failed.json["status"]) == (500, "failed")
        assert Event.objects.get().status == Event.Status.FAILED
        fixed.touch()

        # Reprocess the failed event: Klarefi's retry, or the admin/command path.
        results: list[object] = []
        if reprocess_by == "redelivery":
            reprocess = threading.Thread(target=lambda: results.append(post(base, delivery)))
            reprocess.start()
        else:
            reprocess = process_in_thread("evt_retry", results)
        wait_for(lambda: handler_runs(log)["evt_retry"] == 2, what="the reprocess to start")

        again = post(base, delivery)
        assert again.status == 409
        assert again.json == {"status": "in_flight", "event_id": "evt_retry"}
        assert again.headers["Retry-After"]

        release.touch()
        reprocess.join(timeout=60)

    [result] = results
    if reprocess_by == "redelivery":
        assert (result.status, result.json["status"]) == (200, "processed")
    else:
        assert result.outcome == Outcome.PROCESSED
    event = Event.objects.get()
    assert (event.status, event.attempts, event.error) == ("processed", 2, "")
    assert event.deliveries == (2 if reprocess_by == "redelivery" else 1)
    assert committed_runs("evt_retry") == 1
    assert handler_runs(log) == {"evt_retry": 2}
