"""manage.py klarefi_status: the report, --json, and the exit status for cron and probes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_klarefi.models import Event

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db

_numbers = iter(range(1_000_000))


def stored(status, *, age=timedelta(0), deliveries=1, last_age=None, event_type="case.completed"):
    received = timezone.now() - age
    last = received if last_age is None else timezone.now() - last_age
    return Event.objects.create(
        event_id=f"evt_status_{next(_numbers)}",
        event_type=event_type,
        payload={"event": event_type},
        status=status,
        attempts=deliveries if status != "pending" else 0,
        deliveries=deliveries,
        received_at=received,
        last_received_at=last,
    )


def status(*args):
    """(exit status, stdout) of klarefi_status with ``args``."""
    out = io.StringIO()
    try:
        call_command("klarefi_status", *args, stdout=out, stderr=io.StringIO())
    except SystemExit as exit:
        return exit.code, out.getvalue()
    return 0, out.getvalue()


def report(*args):
    code, out = status("--json", *args)
    return code, json.loads(out)


def test_an_empty_table_needs_no_one():
    code, out = status()
    assert code == 0
    assert "Endpoint default" in out
    assert "last delivery:  never" in out
    assert "Nothing needs a person." in out


def test_counts_by_status_and_the_oldest_of_each():
    stored("processed", age=timedelta(hours=1))
    old_failed = stored("failed", age=timedelta(minutes=30), deliveries=2)
    stored("failed", age=timedelta(minutes=1))
    stored("pending", age=timedelta(minutes=2))
    code, data = report()
    assert code == 0  # the failed ones are still being retried by Klarefi
    default = data["endpoints"]["default"]
    assert default["counts"] == {"pending": 1, "processed": 1, "failed": 2}
    assert default["estimated"] == []
    assert default["oldest_failed"]["event_id"] == old_failed.event_id
    assert default["oldest_failed"]["deliveries"] == 2
    assert default["retries_over"] == {"count": 0, "estimated": False, "latest": []}
    assert data["status"] == "ok"
    assert data["problems"] == []


@pytest.mark.parametrize(
    ("deliveries", "age"), [(5, timedelta(minutes=40)), (1, timedelta(hours=3))]
)
def test_a_failed_event_whose_retries_are_over_needs_a_person(deliveries, age):
    event = stored("failed", deliveries=deliveries, age=age)
    stored("failed", deliveries=1, age=timedelta(minutes=3))  # Klarefi retries this one
    code, data = report()
    assert code == 1
    over = data["endpoints"]["default"]["retries_over"]
    assert over["count"] == 1
    assert [e["event_id"] for e in over["latest"]] == [event.event_id]
    [problem] = data["problems"]
    assert (problem["endpoint"], problem["kind"]) == ("default", "retries_over")
    code, out = status()
    assert code == 1
    assert event.event_id in out
    assert "klarefi_reprocess --failed" in out


def test_in_task_mode_every_failed_event_needs_a_person(settings):
    settings.KLAREFI_PROCESSING = "task"
    stored("failed", age=timedelta(minutes=1))
    assert report()[0] == 1


def test_a_pending_event_older_than_max_pending_age_needs_a_person():
    stored("pending", age=timedelta(minutes=11))
    code, data = report()
    assert code == 1
    assert [p["kind"] for p in data["problems"]] == ["pending_too_old"]
    assert data["max_pending_age_seconds"] == 600
    assert report("--max-pending-age", "1h")[0] == 0


def test_silence_is_checked_only_when_asked():
    stored("processed", age=timedelta(hours=2))
    assert status()[0] == 0
    code, data = report("--max-silence", "90m")
    assert code == 1
    assert [p["kind"] for p in data["problems"]] == ["silence"]
    assert report("--max-silence", "3h")[0] == 0


def test_no_delivery_ever_is_silence():
    code, out = status("--max-silence", "10m")
    assert code == 1
    assert "no delivery ever" in out


def test_the_last_delivery_counts_redeliveries_of_older_events():
    stored("processed", age=timedelta(minutes=50))
    redelivered = stored(
        "failed", age=timedelta(hours=1), deliveries=4, last_age=timedelta(minutes=5)
    )
    code, data = report("--max-silence", "20m")
    assert code == 0
    last = data["endpoints"]["default"]["last_delivery_at"]
    assert last == redelivered.last_received_at.isoformat()


def test_durations_are_parsed_as_the_other_commands_parse_them():
    with pytest.raises(CommandError, match="not a duration"):
        call_command("klarefi_status", "--max-pending-age", "ten minutes")


def status_queries():
    for age in range(5):
        stored("processed", age=timedelta(minutes=age))
    stored("failed", age=timedelta(hours=4))
    stored("pending", age=timedelta(minutes=1))
    with CaptureQueriesContext(connection) as queries:
        status()
    statements = [q["sql"] for q in queries.captured_queries if "django_klarefi_event" in q["sql"]]
    assert statements
    return statements


def test_no_query_counts_the_whole_table_or_loads_payloads():
    for sql in status_queries():
        assert '"payload"' not in sql, sql
        assert '"error"' not in sql, sql
        if "WHERE" not in sql:
            # The latest received_at: one lookup at the end of its index.
            assert sql == (
                'SELECT MAX("django_klarefi_event"."received_at") AS "latest" '
                'FROM "django_klarefi_event"'
            )


@pytest.mark.postgres
def test_every_query_is_served_by_an_index_on_postgresql():
    # On a small table the planner would rather scan it; forbidding that shows whether an
    # index can serve each statement at all, as it must on a table of millions of rows.
    statements = status_queries()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in statements:
            if sql.startswith("SELECT reltuples"):
                continue
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on django_klarefi_event" not in plan, (sql, plan)


def test_it_cannot_tell_when_the_database_is_down(tmp_path):
    # A real process, its database server unreachable (nothing listens on port 9).
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "KLAREFI_TEST_DB": "postgres",
        "KLAREFI_PG_HOST": "127.0.0.1",
        "KLAREFI_PG_PORT": "9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "klarefi_status", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["status"] == "unknown"
    plain = subprocess.run(
        [sys.executable, "-m", "django", "klarefi_status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 2
    assert "Could not tell whether anything needs a person" in plain.stderr
