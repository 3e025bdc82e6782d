"""``KLAREFI_PAYLOAD_RETENTION``: ``klarefi_prune_events`` erases the payload data of old
processed events, in batches, and keeps their rows; check E020."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.personal_data import envelope
from django_klarefi.signals import event_erased

pytestmark = pytest.mark.django_db(transaction=True)

Status = Event.Status
MARKER = "Jean-Claude-Marker-0451"


def events(count, status=Status.PROCESSED, *, age=timedelta(days=100), prefix=None):
    received = timezone.now() - age
    prefix = prefix or f"evt_{status}_{age.days}d"
    Event.objects.bulk_create(
        Event(
            event_id=f"{prefix}_{number}",
            event_type="case.completed",
            case_id="case_1",
            payload={
                "id": f"{prefix}_{number}",
                "event": "case.completed",
                "case_id": "case_1",
                "data": {"name": MARKER},
            },
            error=f"ValueError: {MARKER}" if status == Status.FAILED else "",
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
    call_command("klarefi_prune_events", *args, stdout=out, stderr=io.StringIO(), no_color=True)
    return out.getvalue()


def erased_ids():
    return set(
        Event.objects.filter(payload_erased_at__isnull=False).values_list("event_id", flat=True)
    )


def test_erases_old_processed_payloads_and_keeps_the_rows(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(3, age=timedelta(days=31), prefix="old")
    events(2, age=timedelta(days=29), prefix="young")

    output = prune()

    assert Event.objects.count() == 5
    assert erased_ids() == {"old_0", "old_1", "old_2"}
    old = Event.objects.get(event_id="old_0")
    assert old.payload == {"id": "old_0", "event": "case.completed", "case_id": "case_1"}
    assert Event.objects.get(event_id="young_0").payload["data"] == {"name": MARKER}
    assert re.search(
        r"^Erased the payload data of 3 events \(processed\) received before \S+ \S+ in 1 "
        r"batch \(KLAREFI_PAYLOAD_RETENTION\); failed and pending events keep theirs until "
        r"they are processed\.$",
        output,
        re.MULTILINE,
    )
    assert MARKER not in output


def test_failed_and_pending_events_keep_their_payloads(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(2, Status.FAILED)
    events(2, Status.PENDING)

    prune()

    assert erased_ids() == set()
    failed = Event.objects.filter(status=Status.FAILED).first()
    assert failed.payload["data"] == {"name": MARKER}
    assert failed.error == f"ValueError: {MARKER}"


def test_an_event_processed_later_is_erased_by_the_next_run(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(1, Status.FAILED, prefix="late")
    prune()
    Event.objects.filter(event_id="late_0").update(status=Status.PROCESSED, error="")
    prune()
    assert erased_ids() == {"late_0"}


def test_zero_erases_every_processed_payload(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(0)
    events(2, age=timedelta(seconds=1))
    prune()
    assert len(erased_ids()) == 2


def test_with_event_retention_too_it_deletes_then_erases(settings):
    settings.KLAREFI_EVENT_RETENTION = "90d"
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(2, age=timedelta(days=100), prefix="ancient")
    events(2, age=timedelta(days=40), prefix="old")
    events(1, age=timedelta(days=1), prefix="new")

    output = prune()

    assert set(Event.objects.values_list("event_id", flat=True)) == {"old_0", "old_1", "new_0"}
    assert erased_ids() == {"old_0", "old_1"}
    summaries = [line for line in output.splitlines() if line[:6] in ("Delete", "Erased")]
    assert summaries[0].startswith("Deleted 2 events (processed)")
    assert summaries[1].startswith("Erased the payload data of 2 events (processed)")


def test_older_than_deletes_and_the_setting_erases(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(1, age=timedelta(days=100), prefix="ancient")
    events(1, age=timedelta(days=40), prefix="old")
    prune("--older-than", "90d")
    assert set(Event.objects.values_list("event_id", flat=True)) == {"old_0"}
    assert erased_ids() == {"old_0"}


def test_without_any_retention_it_still_names_the_settings():
    events(1)
    with pytest.raises(CommandError, match="KLAREFI_EVENT_RETENTION"):
        prune()
    assert erased_ids() == set()


def test_dry_run_counts_and_erases_nothing(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(3)
    events(1, Status.FAILED)
    with CaptureQueriesContext(connection) as queries:
        output = prune("--dry-run")
    assert erased_ids() == set()
    assert [q for q in queries.captured_queries if not q["sql"].startswith("SELECT")] == []
    assert re.fullmatch(
        r"Dry run: would erase the payload data of 3 events \(processed\) received before .+ "
        r"\(KLAREFI_PAYLOAD_RETENTION\); failed and pending events keep theirs until they are "
        r"processed\. Nothing was erased\.\n",
        output,
    )


def test_erases_in_batches_of_batch_size_with_progress_lines(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(25)
    with CaptureQueriesContext(connection) as queries:
        output = prune("--batch-size", "10")
    assert len(erased_ids()) == 25
    assert [line for line in output.splitlines() if line.startswith("batch")] == [
        "batch 1: erased the payload data of 10 processed (10 of 25)",
        "batch 2: erased the payload data of 10 processed (20 of 25)",
        "batch 3: erased the payload data of 5 processed (25 of 25)",
    ]
    # One write per batch: on PostgreSQL one UPDATE ... FROM (VALUES ...), elsewhere one
    # executemany (SQLite adds before it the empty UPDATE that takes its write lock).
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if "UPDATE" in q["sql"] and '"payload" = ' in q["sql"]
    ]
    assert len(writes) == 3
    if connection.vendor == "postgresql":
        assert all("FROM (VALUES" in sql for sql in writes)
    else:
        assert [sql.split(" times: ")[0] for sql in writes] == ["10", "10", "5"]


def test_sends_event_erased_with_the_retention_reason(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(2)
    seen = []

    def receiver(sender, event, reason, actor, **kwargs):
        seen.append((event.event_id, reason, actor, event.payload))

    event_erased.connect(receiver)
    try:
        prune()
    finally:
        event_erased.disconnect(receiver)
    # Oldest first: evt_..._1 was received a second before evt_..._0.
    assert [(event_id, reason) for event_id, reason, _, _ in seen] == [
        ("evt_processed_100d_1", "retention"),
        ("evt_processed_100d_0", "retention"),
    ]
    assert seen[0][2] == "manage.py klarefi_prune_events (KLAREFI_PAYLOAD_RETENTION)"
    assert seen[0][3] == envelope(
        {"id": "evt_processed_100d_1", "event": "case.completed", "case_id": "case_1"}
    )


def test_batches_walk_received_at_from_the_last_batch_on(settings):
    settings.KLAREFI_PAYLOAD_RETENTION = timedelta(days=30)
    events(25)
    with CaptureQueriesContext(connection) as queries:
        prune("--batch-size", "10")
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "LIMIT 10" in q["sql"]
    ]
    assert len(reads) == 3
    assert '"received_at" >=' not in reads[0]
    assert all('"received_at" >=' in sql for sql in reads[1:])
    assert all('ORDER BY "django_klarefi_event"."received_at" ASC' in sql for sql in reads)


@pytest.mark.parametrize("value", ["30d", 30, timedelta(days=-1)])
def test_an_invalid_setting_is_a_clear_error_and_erases_nothing(settings, value):
    settings.KLAREFI_PAYLOAD_RETENTION = value
    events(1)
    with pytest.raises(
        CommandError, match=r"KLAREFI_PAYLOAD_RETENTION must be a datetime\.timedelta"
    ):
        prune()
    assert erased_ids() == set()


# Check E020 (never touches the database).


def e020(settings, value):
    settings.KLAREFI_PAYLOAD_RETENTION = value
    return [m for m in checks.run_checks() if m.id == "django_klarefi.E020"]


@pytest.mark.parametrize("value", ["30d", 30, 1.5, timedelta(days=-1), [timedelta(days=1)]])
def test_a_setting_that_is_no_timedelta_is_e020(settings, value, django_db_blocker):
    with django_db_blocker.block():
        [message] = e020(settings, value)
    assert "KLAREFI_PAYLOAD_RETENTION must be a datetime.timedelta" in message.msg
    assert "timedelta(days=30)" in message.hint


@pytest.mark.parametrize("value", [None, timedelta(0), timedelta(days=30)])
def test_valid_settings_are_not_e020(settings, value, django_db_blocker):
    with django_db_blocker.block():
        assert e020(settings, value) == []
