"""The 0003_endpoints migration on a populated events table, both ways."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

APP = "django_klarefi"
BEFORE = (APP, "0002_payload_field_test_events")
AFTER = (APP, "0003_endpoints")
ROWS = 500
migration_module = importlib.import_module("django_klarefi.migrations.0003_endpoints")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def old_schema(transactional_db):
    """The table as the previous release left it, with ROWS events; the latest schema
    again afterwards."""
    apps = migrate(BEFORE)
    Event = apps.get_model(APP, "Event")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    Event.objects.bulk_create(
        Event(
            event_id=f"evt_{number:05d}",
            event_type="case.completed",
            payload={"id": f"evt_{number:05d}", "event": "case.completed"},
            status="processed",
            received_at=moment,
            last_received_at=moment,
        )
        for number in range(ROWS)
    )
    yield apps
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def insert_sql(event_id, endpoint=None):
    """An INSERT as raw SQL, with or without the endpoint column: without it is what
    the previous release's processes send while the migration runs."""
    columns = ["event_id", "event_type", "case_id", "session_id", "payload", "status",
               "error", "attempts", "deliveries", "is_test", "received_at",
               "last_received_at"]  # fmt: skip
    values = [event_id, "case.completed", "", "", "{}", "pending", "", 0, 1, False,
              datetime.now(UTC), datetime.now(UTC)]  # fmt: skip
    if endpoint is not None:
        columns.append("endpoint")
        values.append(endpoint)
    sql = (
        f"INSERT INTO django_klarefi_event ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(values))})"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, values)


def test_every_row_is_kept_as_default_and_ids_become_unique_per_endpoint(old_schema):
    apps = migrate(AFTER)
    Event = apps.get_model(APP, "Event")
    assert Event.objects.count() == ROWS
    assert set(Event.objects.values_list("endpoint", flat=True)) == {"default"}
    # The same id at another endpoint is a second event; at the same endpoint, refused.
    insert_sql("evt_00001", "eu")
    with pytest.raises(IntegrityError):
        insert_sql("evt_00001", "eu")
    with pytest.raises(IntegrityError):
        insert_sql("evt_00002", "default")
    # The previous release's INSERT, without the column: its row belongs to default, and
    # its duplicates are still refused.
    insert_sql("evt_old_code")
    assert Event.objects.get(event_id="evt_old_code").endpoint == "default"
    with pytest.raises(IntegrityError):
        insert_sql("evt_00003")
    assert Event.objects.filter(event_id="evt_00001").count() == 2


def test_going_back_restores_the_unique_event_id(old_schema):
    migrate(AFTER)
    apps = migrate(BEFORE)
    Event = apps.get_model(APP, "Event")
    assert Event.objects.count() == ROWS
    with pytest.raises(IntegrityError):
        insert_sql("evt_00001")


def test_going_back_is_refused_while_two_endpoints_share_an_id(old_schema):
    migrate(AFTER)
    insert_sql("evt_00001", "eu")
    with pytest.raises(IntegrityError):
        migrate(BEFORE)
    # Once the duplicate is gone, going back runs again to its end.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_klarefi_event WHERE endpoint = 'eu'")
    apps = migrate(BEFORE)
    assert apps.get_model(APP, "Event").objects.count() == ROWS


@pytest.mark.postgres
def test_postgres_builds_valid_indexes_and_leaves_no_old_constraint(old_schema):
    migrate(AFTER)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid, i.indisunique FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'django_klarefi_event'::regclass"
        )
        indexes = {name: (valid, unique) for name, valid, unique in cursor.fetchall()}
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = "
            "'django_klarefi_event'::regclass AND contype = 'u'"
        )
        constraints = [row[0] for row in cursor.fetchall()]
        # No rewrite: the column's DEFAULT is kept, for the previous release's inserts.
        cursor.execute(
            "SELECT column_default FROM information_schema.columns "
            "WHERE table_name = 'django_klarefi_event' AND column_name = 'endpoint'"
        )
        default = cursor.fetchone()[0]
    assert constraints == ["klarefi_event_unique_id"]
    assert indexes["klarefi_event_unique_id"] == (True, True)
    assert indexes["klarefi_event_endpoint"] == (True, False)
    assert not any(name.endswith("_like") for name in indexes)
    assert all(valid for valid, _ in indexes.values())
    assert default.startswith("'default'")


@pytest.mark.postgres
def test_postgres_steps_run_again_after_an_interruption(old_schema):
    # An interrupted run: the column added, an invalid leftover of the unique build.
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE django_klarefi_event ADD COLUMN endpoint varchar(64) "
            "DEFAULT 'default' NOT NULL"
        )
        # Two rows with the same id at one endpoint make the concurrent build fail and
        # leave an INVALID index behind, as an interruption does.
        cursor.execute("ALTER TABLE django_klarefi_event DROP CONSTRAINT "
                       "django_klarefi_event_event_id_key")  # fmt: skip
    insert_sql("evt_00001", "default")
    with connection.schema_editor(atomic=False) as editor, pytest.raises(IntegrityError):
        migration_module.postgres_forwards(editor)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "to_regclass('klarefi_event_unique_id')"
        )
        assert cursor.fetchone() == (False,)
        cursor.execute("DELETE FROM django_klarefi_event WHERE id = "
                       "(SELECT max(id) FROM django_klarefi_event)")  # fmt: skip
    with connection.schema_editor(atomic=False) as editor:
        migration_module.postgres_forwards(editor)
    migrate(AFTER)  # and migrate again, as after an interruption: nothing left to do
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "to_regclass('klarefi_event_unique_id')"
        )
        assert cursor.fetchone() == (True,)
    with pytest.raises(IntegrityError):
        insert_sql("evt_00002")
