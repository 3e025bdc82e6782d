"""``manage.py klarefi_prune_events``: what it deletes, what it keeps, and how it batches."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_klarefi.conf import SHORT_RETENTION_REASON
from django_klarefi.management.commands.klarefi_prune_events import DEFAULT_BATCH_SIZE
from django_klarefi.models import Event
from tests.servers import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

Status = Event.Status


def events(count, status=Status.PROCESSED, *, age=timedelta(days=100), prefix=None):
    """``count`` events received ``age`` ago."""
    received = timezone.now() - age
    prefix = prefix or f"evt_{status}_{age.days}d"
    Event.objects.bulk_create(
        Event(
            event_id=f"{prefix}_{number}",
            event_type="case.completed",
            payload={"id": f"{prefix}_{number}", "event": "case.completed"},
            status=status,
            attempts=1,
            deliveries=1,
            received_at=received - timedelta(seconds=number),
            last_received_at=received,
        )
        for number in range(count)
    )


def prune(*args):
    out = io.StringIO()
    call_command("klarefi_prune_events", *args, stdout=out, no_color=True)
    return out.getvalue()


def left():
    """How many events of each status remain."""
    return {
        status: Event.objects.filter(status=status).count()
        for status in Status.values
        if Event.objects.filter(status=status).exists()
    }


def writes(queries):
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]


def deletes(queries):
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]


# What goes and what stays.


def test_deletes_old_processed_events_and_keeps_failed_pending_and_recent_ones():
    events(3, Status.PROCESSED)
    events(2, Status.FAILED)
    events(2, Status.PENDING)
    events(4, Status.PROCESSED, age=timedelta(days=10))

    output = prune("--older-than", "90d")

    assert left() == {"processed": 4, "failed": 2, "pending": 2}
    assert not Event.objects.filter(received_at__lt=timezone.now() - timedelta(days=90)).filter(
        status=Status.PROCESSED
    )
    assert re.search(
        r"^Deleted 3 events \(processed\) received before \S+ \S+ in 1 batch; "
        r"pending and failed events are kept\.$",
        output,
        re.MULTILINE,
    )


def test_older_than_takes_hours_minutes_and_seconds():
    events(1, age=timedelta(hours=13), prefix="evt_13h")
    events(1, age=timedelta(hours=11), prefix="evt_11h")

    prune("--older-than", "12h")

    assert list(Event.objects.values_list("event_id", flat=True)) == ["evt_11h_0"]


def test_status_chooses_which_statuses_go():
    events(3, Status.PROCESSED)
    events(2, Status.FAILED)
    events(2, Status.PENDING)

    output = prune("--older-than", "90d", "--status", "failed", "pending")

    assert left() == {"processed": 3}
    assert "Deleted 4 events (pending and failed)" in output
    assert "processed events are kept" in output


def test_status_rejects_unknown_statuses():
    with pytest.raises(CommandError, match="invalid choice: 'done'"):
        prune("--older-than", "90d", "--status", "done")


# The retention setting.


@override_settings(KLAREFI_EVENT_RETENTION="30d")
def test_retention_setting_is_the_default_older_than():
    events(2, age=timedelta(days=31))
    events(1, age=timedelta(days=29))

    output = prune()

    assert left() == {"processed": 1}
    assert "Deleted 2 events (processed)" in output


@override_settings(KLAREFI_EVENT_RETENTION="30d")
def test_older_than_overrides_the_retention_setting():
    events(2, age=timedelta(days=31))

    prune("--older-than", "60d")

    assert left() == {"processed": 2}


def test_without_older_than_or_retention_setting_it_names_the_setting():
    events(1)
    with pytest.raises(CommandError, match=r"Pass --older-than .* or set KLAREFI_EVENT_RETENTION"):
        prune()
    assert left() == {"processed": 1}


@override_settings(KLAREFI_EVENT_RETENTION="3 months")
def test_an_invalid_retention_setting_is_a_clear_error():
    events(1)
    with pytest.raises(CommandError, match="KLAREFI_EVENT_RETENTION is not a valid duration"):
        prune()
    assert left() == {"processed": 1}


@pytest.mark.parametrize("value", ["90", "ninety days", "0d", "1.5d", "-1d"])
def test_an_invalid_older_than_is_a_clear_error(value):
    events(1)
    with pytest.raises(CommandError, match=r"--older-than: .*not a duration"):
        prune(f"--older-than={value}")
    assert left() == {"processed": 1}


def test_an_older_than_reaching_before_year_one_is_a_clear_error():
    with pytest.raises(CommandError, match="before year 1"):
        prune("--older-than", "999999999d")


# Dry run.


def test_dry_run_counts_and_deletes_nothing():
    events(5, Status.PROCESSED)
    events(2, Status.FAILED)

    with CaptureQueriesContext(connection) as queries:
        output = prune("--older-than", "90d", "--dry-run", "--status", "processed", "failed")

    assert left() == {"processed": 5, "failed": 2}
    assert writes(queries) == []
    lines = output.splitlines()
    assert lines[0].startswith("processed: 5 received before ")
    assert lines[1].startswith("failed: 2 received before ")
    assert re.fullmatch(
        r"Dry run: would delete 7 events \(processed and failed\) received before .+; "
        r"pending events are kept\. Nothing was deleted\.",
        lines[-1],
    )


# Batches.


def test_deletes_in_batches_of_batch_size_without_loading_ids():
    events(95)
    events(3, Status.FAILED)

    with CaptureQueriesContext(connection) as queries:
        output = prune("--older-than", "90d", "--batch-size", "10")

    assert left() == {"failed": 3}
    batch_lines = [line for line in output.splitlines() if line.startswith("batch ")]
    assert batch_lines[0] == "batch 1: deleted 10 processed (10 of 95)"
    assert batch_lines[-1] == "batch 10: deleted 5 processed (95 of 95)"
    assert len(batch_lines) == 10
    assert "in 10 batches" in output
    # One DELETE of events per batch ...
    table = Event._meta.db_table
    event_deletes = [sql for sql in deletes(queries) if sql.startswith(f'DELETE FROM "{table}"')]
    assert len(event_deletes) == 10
    # ... and the only rows read are the counts, and each batch's keys: tests.testapp's
    # EventNote points at Event with a cascading foreign key, so Django reads the batch's
    # keys (never more than the batch, chosen by the LIMIT subquery) to delete the notes
    # first. The payloads are never read.
    # Each batch also reads one timestamp, its last received_at, where the next begins.
    selects = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    fetches = [sql for sql in selects if "COUNT(" not in sql.upper()]
    keys = [sql for sql in fetches if sql.startswith(f'SELECT "{table}"."id" FROM "{table}"')]
    edges = [sql for sql in fetches if sql.startswith(f'SELECT "{table}"."received_at" AS')]
    assert (len(keys), len(edges), len(fetches)) == (10, 10, 20)
    assert all("LIMIT 10" in sql for sql in keys)
    assert all(re.search(r"LIMIT 1 OFFSET 9\b", sql) for sql in edges)
    assert not any('"payload"' in sql for sql in selects)


def test_each_batch_starts_where_the_last_ended_ties_included():
    # 25 events in 5 groups of equal received_at, 4 per batch: a batch boundary falls
    # inside groups; none is skipped or deleted twice, and only the first batch's scan
    # starts at the oldest end (the deleted rows' index entries stay until VACUUM).
    received = timezone.now() - timedelta(days=100)
    Event.objects.bulk_create(
        Event(
            event_id=f"evt_tie_{number}",
            event_type="case.completed",
            payload={},
            status=Status.PROCESSED,
            received_at=received - timedelta(seconds=number // 5),
            last_received_at=received,
        )
        for number in range(25)
    )
    with CaptureQueriesContext(connection) as queries:
        output = prune("--older-than", "90d", "--batch-size", "4")
    assert left() == {}
    assert "Deleted 25 events" in output
    table = Event._meta.db_table
    keys = [q["sql"] for q in queries if q["sql"].startswith(f'SELECT "{table}"."id" FROM')]
    assert '"received_at" >=' not in keys[0]
    assert all('"received_at" >=' in sql for sql in keys[1:])


def test_batch_size_larger_than_the_rows_deletes_in_one_batch():
    events(7)
    output = prune("--older-than", "90d")
    assert "batch 1: deleted 7 processed (7 of 7)" in output
    assert left() == {}
    assert DEFAULT_BATCH_SIZE == 1000


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_batch_size_must_be_a_positive_number(value):
    with pytest.raises(CommandError, match="not a positive whole number"):
        prune("--older-than", "90d", f"--batch-size={value}")


def test_nothing_to_delete_is_a_successful_empty_run():
    events(2, Status.FAILED)
    output = prune("--older-than", "90d")
    assert output.splitlines()[-1].startswith("Deleted 0 events (processed) received before ")
    assert "in 0 batches" in output
    assert left() == {"failed": 2}


def test_each_batch_commits_before_the_next_begins():
    # Watch from a second connection: just before each DELETE, the earlier batches are
    # already gone for everyone. A huge prune is never one giant transaction, and an
    # interrupted one keeps what it deleted.
    events(30)
    seen = []
    observer = connections.create_connection(DEFAULT_DB_ALIAS)

    def count_from_elsewhere(execute, sql, params, many, context):
        if sql.lstrip().startswith(f'DELETE FROM "{Event._meta.db_table}"'):
            with observer.cursor() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {Event._meta.db_table}")
                seen.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(count_from_elsewhere):
            prune("--older-than", "90d", "--batch-size", "10")
        with observer.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {Event._meta.db_table}")
            seen.append(cursor.fetchone()[0])
    finally:
        observer.close()

    assert seen == [30, 20, 10, 0]


@pytest.mark.parametrize("value", ["2h", "179m", "10799s", "1h"])
def test_an_older_than_shorter_than_the_retry_schedule_is_refused_and_deletes_nothing(value):
    events(2, age=timedelta(days=100))
    events(2, age=timedelta(hours=2, minutes=50), prefix="evt_late_retry")

    with pytest.raises(CommandError) as refused:
        prune("--older-than", value)

    message = str(refused.value)
    # The same explanation as the system check E012 gives for KLAREFI_EVENT_RETENTION.
    assert message == (
        f"--older-than {value} is shorter than Klarefi's retry schedule. "
        f"{SHORT_RETENTION_REASON} Use at least 3h. Nothing was deleted."
    )
    assert "2 h 36 min" in message
    assert Event.objects.count() == 4


def test_an_older_than_of_exactly_the_retry_schedule_floor_is_accepted():
    events(1, age=timedelta(hours=3, minutes=1), prefix="evt_old")
    events(1, age=timedelta(hours=2, minutes=59), prefix="evt_young")

    prune("--older-than", "3h")

    assert list(Event.objects.values_list("event_id", flat=True)) == ["evt_young_0"]


@override_settings(KLAREFI_EVENT_RETENTION="2h")
def test_a_retention_setting_shorter_than_the_retry_schedule_is_refused_too():
    events(1, age=timedelta(days=100))

    with pytest.raises(CommandError, match=r"^KLAREFI_EVENT_RETENTION 2h is shorter than"):
        prune()

    assert Event.objects.count() == 1


def test_the_refusal_exits_non_zero_from_the_command_line():
    events(1, age=timedelta(days=100))
    finished = subprocess.run(
        [sys.executable, "-m", "django", "klarefi_prune_events", "--older-than", "1h"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 1
    assert "shorter than Klarefi's retry schedule" in finished.stderr
    assert Event.objects.count() == 1
