"""``manage.py klarefi_reprocess``: every selector, dry run, force, summary, exit codes, recovery.

Handlers are real receivers (the ``handlers`` fixture): a reprocessed event fires its signals,
and its status, attempts and error change on the row, through ``processing.process_event``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.processing import CHUNK_SIZE
from django_klarefi.testing import post_event
from tests.servers import ROOT, subprocess_env
from tests.testapp.models import HandlerRecord

pytestmark = pytest.mark.django_db(transaction=True)

Status = Event.Status


def stored(event_id, status=Status.FAILED, *, event_type="case.completed", age=timedelta(hours=1)):
    """An event row as the receiver leaves it, received ``age`` ago."""
    received = timezone.now() - age
    processed = status == Status.PROCESSED
    return Event.objects.create(
        event_id=event_id,
        event_type=event_type,
        case_id="case_1",
        payload={"id": event_id, "event": event_type, "case_id": "case_1", "data": {}},
        status=status,
        error="Traceback...\nRuntimeError: handler broke" if status == Status.FAILED else "",
        attempts=1 if status != Status.PENDING else 0,
        deliveries=1,
        received_at=received,
        last_received_at=received,
        processed_at=received if processed else None,
    )


def reprocess(*args):
    """Run the command; return (stdout, the CommandError or None)."""
    out = io.StringIO()
    try:
        call_command("klarefi_reprocess", *args, stdout=out, no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def statuses():
    return dict(Event.objects.values_list("event_id", "status"))


def ran(handlers):
    """The event ids the handlers ran for (each event fires two receivers)."""
    return sorted({event.event_id for _, event in handlers.calls})


# Selecting.


def test_refuses_to_run_without_a_selector(handlers):
    stored("evt_failed")
    with pytest.raises(CommandError, match="Choose events: --failed, --pending"):
        call_command("klarefi_reprocess", stdout=io.StringIO())
    assert handlers.calls == []


def test_failed_reprocesses_failed_events_and_fires_their_signals(handlers):
    stored("evt_failed")
    stored("evt_pending", Status.PENDING)
    stored("evt_done", Status.PROCESSED)

    output, error = reprocess("--failed")

    assert error is None
    assert ran(handlers) == ["evt_failed"]
    assert handlers.names == ["typed", "event_received"]
    assert HandlerRecord.objects.filter(event_id="evt_failed").count() == 2
    event = Event.objects.get(event_id="evt_failed")
    assert (event.status, event.attempts, event.error) == (Status.PROCESSED, 2, "")
    assert event.processed_at is not None
    assert statuses() == {
        "evt_failed": Status.PROCESSED,
        "evt_pending": Status.PENDING,
        "evt_done": Status.PROCESSED,
    }
    assert "processed          evt_failed  case.completed  attempt 2" in output
    assert output.splitlines()[-1] == (
        "Summary: 1 event, 1 processed, 0 failed, 0 already processed, 0 in flight."
    )


def test_pending_reprocesses_pending_events(handlers):
    stored("evt_failed")
    stored("evt_pending", Status.PENDING)

    output, error = reprocess("--pending")

    assert error is None
    assert "processed          evt_pending  case.completed  attempt 1" in output
    assert ran(handlers) == ["evt_pending"]
    event = Event.objects.get(event_id="evt_pending")
    assert (event.status, event.attempts) == (Status.PROCESSED, 1)
    assert statuses()["evt_failed"] == Status.FAILED


def test_failed_and_pending_together_select_both(handlers):
    stored("evt_failed")
    stored("evt_pending", Status.PENDING)
    stored("evt_done", Status.PROCESSED)

    output, error = reprocess("--failed", "--pending")

    assert error is None
    assert ran(handlers) == ["evt_failed", "evt_pending"]
    assert "2 processed" in output


def test_event_id_selects_those_events(handlers):
    for name in ("evt_a", "evt_b", "evt_c"):
        stored(name)

    output, error = reprocess("--event-id", "evt_a", "evt_c")

    assert error is None
    assert "2 processed" in output
    assert ran(handlers) == ["evt_a", "evt_c"]
    assert statuses()["evt_b"] == Status.FAILED


def test_event_id_names_processed_events_it_skips_and_ids_it_cannot_find(handlers):
    stored("evt_failed")
    stored("evt_done", Status.PROCESSED)

    output, error = reprocess("--event-id", "evt_failed", "evt_done", "evt_missing")

    assert ran(handlers) == ["evt_failed"]
    assert "not found          evt_missing" in output
    assert "already processed  evt_done  case.completed  skipped; --force runs it again" in output
    assert output.splitlines()[-1] == (
        "Summary: 2 events, 1 processed, 0 failed, 1 already processed, 0 in flight, 1 not found."
    )
    # A missing id makes the run unsuccessful: a typo must not look like success.
    assert str(error) == "1 event not found."


def test_type_selects_events_of_that_type(handlers):
    stored("evt_case")
    stored("evt_doc", event_type="document.processed")
    stored("evt_skill", event_type="skill.resolved")

    output, error = reprocess("--type", "document.processed", "--type", "skill.resolved")

    assert error is None
    assert "skill.resolved" in output
    assert "case.completed" not in output
    assert ran(handlers) == ["evt_doc", "evt_skill"]
    assert statuses()["evt_case"] == Status.FAILED


def test_since_and_until_take_dates_and_datetimes(handlers):
    day = datetime(2026, 3, 10, tzinfo=UTC)
    for name, moment in [
        ("evt_before", day - timedelta(seconds=1)),
        ("evt_morning", day + timedelta(hours=9)),
        ("evt_evening", day + timedelta(hours=23, minutes=59)),
        ("evt_next_day", day + timedelta(days=1)),
    ]:
        event = stored(name)
        Event.objects.filter(pk=event.pk).update(received_at=moment)

    # A date alone: --since from its start, --until through its end.
    output, error = reprocess("--since", "2026-03-10", "--until", "2026-03-10", "--dry-run")
    assert "evt_morning" in output
    assert "evt_evening" in output
    assert "evt_before" not in output
    assert "evt_next_day" not in output

    # Datetimes: --since inclusive, --until exclusive; naive ones are in TIME_ZONE (UTC).
    output, error = reprocess("--since", "2026-03-10T09:00", "--until", "2026-03-10 23:59:00+00:00")

    assert error is None
    assert ran(handlers) == ["evt_morning"]


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-03-10T25:00", "9999-12-31"])
def test_invalid_since_or_until_is_a_clear_error(handlers, value):
    stored("evt_failed")
    with pytest.raises(CommandError, match=r"--until: .*(not a date or datetime|last day)"):
        call_command("klarefi_reprocess", "--until", value, stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"--since"):
        call_command("klarefi_reprocess", "--since", "yesterday", stdout=io.StringIO())
    assert handlers.calls == []


def test_older_than_selects_events_received_before_now_minus_it(handlers):
    stored("evt_old", age=timedelta(minutes=11))
    stored("evt_new", age=timedelta(minutes=9))

    output, error = reprocess("--older-than", "10m")

    assert error is None
    assert "evt_new" not in output
    assert ran(handlers) == ["evt_old"]


@pytest.mark.parametrize("value", ["10", "ten minutes", "0m", "-10m", "999999999d"])
def test_invalid_older_than_is_a_clear_error(handlers, value):
    stored("evt_failed")
    with pytest.raises(CommandError, match="--older-than"):
        call_command("klarefi_reprocess", f"--older-than={value}", stdout=io.StringIO())
    assert handlers.calls == []


def test_selectors_narrow_together(handlers):
    stored("evt_match", event_type="session.expired", age=timedelta(days=2))
    stored("evt_too_new", event_type="session.expired", age=timedelta(minutes=1))
    stored("evt_other_type", age=timedelta(days=2))
    stored("evt_pending", Status.PENDING, event_type="session.expired", age=timedelta(days=2))

    output, error = reprocess("--failed", "--type", "session.expired", "--older-than", "1d")

    assert error is None
    assert ran(handlers) == ["evt_match"]
    assert "Summary: 1 event," in output


# Outcomes, summary and exit codes.


def test_an_event_that_still_fails_records_the_new_failure_and_exits_non_zero(handlers):
    stored("evt_failed")
    stored("evt_pending", Status.PENDING)
    handlers.fail_with = ValueError("still broken")

    output, error = reprocess("--failed", "--pending")

    assert str(error) == "2 events still failing."
    event = Event.objects.get(event_id="evt_failed")
    assert event.status == Status.FAILED
    assert event.attempts == 2
    assert "ValueError: still broken" in event.error
    assert "Traceback" in event.error
    # The handler's own write was rolled back with the failed attempt.
    assert HandlerRecord.objects.count() == 0
    # The exception's class only: its message may quote the payload (personal data).
    assert "failed             evt_failed  case.completed  attempt 2: ValueError\n" in output
    assert "still broken" not in output
    assert output.splitlines()[-1] == (
        "Summary: 2 events, 0 processed, 2 failed, 0 already processed, 0 in flight."
    )


def test_exit_status_is_1_when_an_event_still_fails_and_0_otherwise(handlers, capsys):
    stored("evt_failed")
    handlers.fail_with = ValueError("still broken")
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "klarefi_reprocess", "--failed"])
    assert exited.value.code == 1
    assert "CommandError: 1 event still failing." in capsys.readouterr().err

    handlers.fail_with = None
    # Returns normally: exit status 0.
    execute_from_command_line(["manage.py", "klarefi_reprocess", "--failed"])
    assert "1 processed" in capsys.readouterr().out
    assert statuses() == {"evt_failed": Status.PROCESSED}


def test_exit_status_of_a_real_manage_py_process():
    # No handler is connected in the subprocess: the failed event succeeds there.
    stored("evt_failed")
    stored("evt_missing_type", event_type="x.unknown")
    command = [sys.executable, "-m", "django", "klarefi_reprocess", "--failed"]
    env = subprocess_env()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 processed" in done.stdout

    done = subprocess.run(
        [*command[:-1], "--event-id", "evt_nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "CommandError: 1 event not found." in done.stderr
    assert "Traceback" not in done.stderr


def test_no_matching_events_is_a_successful_empty_run(handlers):
    output, error = reprocess("--failed")
    assert error is None
    assert output == "Summary: 0 events, 0 processed, 0 failed, 0 already processed, 0 in flight.\n"


# Processed events and --force.


def test_processed_events_are_skipped_and_counted_by_default(handlers):
    stored("evt_done", Status.PROCESSED)
    stored("evt_failed")

    output, error = reprocess("--type", "case.completed")

    assert error is None
    assert ran(handlers) == ["evt_failed"]
    assert Event.objects.get(event_id="evt_done").attempts == 1
    # Counted, not listed (a type can match millions of processed events) ...
    assert "evt_done" not in output
    assert "1 processed, 0 failed, 1 already processed" in output
    # ... and listed with -v 2.
    output, error = reprocess("--type", "case.completed", "-v", "2")
    assert "already processed  evt_done" in output
    assert "already processed  evt_failed" in output


def test_force_runs_processed_events_again(handlers):
    stored("evt_done", Status.PROCESSED)

    output, error = reprocess("--event-id", "evt_done", "--force")

    assert error is None
    assert ran(handlers) == ["evt_done"]
    event = Event.objects.get(event_id="evt_done")
    assert (event.status, event.attempts) == (Status.PROCESSED, 2)
    assert "processed          evt_done  case.completed  attempt 2" in output


# Dry run.


def test_dry_run_lists_what_would_run_and_writes_nothing(handlers):
    stored("evt_failed")
    stored("evt_pending", Status.PENDING)
    stored("evt_done", Status.PROCESSED)
    before = list(Event.objects.order_by("pk").values())

    with CaptureQueriesContext(connection) as queries:
        output, error = reprocess("--failed", "--pending", "--dry-run")

    assert error is None
    assert handlers.calls == []
    assert list(Event.objects.order_by("pk").values()) == before
    assert all(query["sql"].lstrip().upper().startswith("SELECT") for query in queries)
    lines = output.splitlines()
    assert lines[0].startswith("would run          evt_failed  case.completed  (failed, received ")
    assert lines[1].startswith(
        "would run          evt_pending  case.completed  (pending, received "
    )
    assert lines[-1] == (
        "Dry run: 2 events would run; 0 already processed (skipped). Nothing was changed."
    )


def test_dry_run_with_force_includes_processed_events(handlers):
    stored("evt_done", Status.PROCESSED)
    output, error = reprocess("--event-id", "evt_done", "--force", "--dry-run")
    assert error is None
    assert "would run          evt_done" in output
    assert handlers.calls == []
    assert Event.objects.get(event_id="evt_done").attempts == 1


# Bounded memory.


def test_iterates_in_chunks_not_the_whole_table(handlers):
    count = 2 * CHUNK_SIZE + 1
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            event_id=f"evt_{number:05}",
            event_type="case.completed",
            payload={"event": "case.completed"},
            status=Status.PENDING,
            received_at=now,
            last_received_at=now,
        )
        for number in range(count)
    )

    with CaptureQueriesContext(connection) as queries:
        output, error = reprocess("--pending", "--dry-run")

    assert error is None
    assert sum(line.startswith("would run ") for line in output.splitlines()) == count
    listing = [q["sql"] for q in queries if "ORDER BY" in q["sql"]]
    assert len(listing) == 3
    assert all(f"LIMIT {CHUNK_SIZE}" in sql for sql in listing)
    # Only the columns the listing needs: not the payloads.
    assert not any('"payload"' in sql for sql in listing)


# In flight (PostgreSQL row locks).


@pytest.mark.postgres
def test_an_event_being_processed_elsewhere_is_reported_in_flight_and_left_alone(handlers):
    stored("evt_busy")
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        from django.db import connection as thread_connection

        try:
            with transaction.atomic():
                Event.objects.select_for_update().get(event_id="evt_busy")
                locked.set()
                release.wait(30)
        finally:
            thread_connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(30)
        output, error = reprocess("--failed")
    finally:
        release.set()
        holder.join(30)

    assert error is None
    assert handlers.calls == []
    assert "in flight          evt_busy  case.completed  being processed elsewhere" in output
    assert "0 processed, 0 failed, 0 already processed, 1 in flight." in output
    event = Event.objects.get(event_id="evt_busy")
    assert (event.status, event.attempts) == (Status.FAILED, 1)


# Recovery: stored but never enqueued (task mode), and failed deliveries.


@override_settings(KLAREFI_PROCESSING="task", KLAREFI_TASK_BACKEND="gone")
def test_pending_older_than_recovers_events_stored_but_never_enqueued(client, handlers):
    # The task backend is unavailable: the event is committed as pending, never enqueued,
    # exactly as when the process dies between commit and enqueue.
    response = post_event(client, {"id": "evt_lost", "event": "case.completed"})
    assert response.status_code == 503
    assert statuses() == {"evt_lost": Status.PENDING}
    assert handlers.calls == []
    post_event(client, {"id": "evt_recent", "event": "case.completed"})
    # Ten minutes later, evt_lost is overdue; evt_recent (still within its queue's time) is not.
    Event.objects.filter(event_id="evt_lost").update(
        received_at=timezone.now() - timedelta(minutes=11)
    )

    output, error = reprocess("--pending", "--older-than", "10m")

    assert error is None
    assert "processed          evt_lost" in output
    assert ran(handlers) == ["evt_lost"]
    assert statuses() == {"evt_lost": Status.PROCESSED, "evt_recent": Status.PENDING}
    assert Event.objects.get(event_id="evt_lost").attempts == 1


def test_a_failed_delivery_is_reprocessed_once_its_handler_is_fixed(client, handlers):
    handlers.fail_with = RuntimeError("downstream was down")
    response = post_event(client, {"id": "evt_1", "event": "skill.resolved", "case_id": "case_9"})
    assert response.status_code == 500
    failed = Event.objects.get(event_id="evt_1")
    assert (failed.status, failed.attempts) == (Status.FAILED, 1)
    assert "RuntimeError: downstream was down" in failed.error

    handlers.fail_with = None
    handlers.calls.clear()
    output, error = reprocess("--failed")

    assert error is None
    assert "processed          evt_1  skill.resolved  attempt 2" in output
    assert [(name, event.event_id) for name, event in handlers.calls] == [
        ("typed", "evt_1"),
        ("event_received", "evt_1"),
    ]
    event = Event.objects.get(event_id="evt_1")
    assert (event.status, event.attempts, event.error) == (Status.PROCESSED, 2, "")
    assert HandlerRecord.objects.filter(event_id="evt_1").count() == 2
