# mypy: allow-untyped-defs, allow-untyped-calls
"""Named endpoints: the Endpoint model, Event.endpoint, and the event id unique per endpoint.

Non-atomic, so that on PostgreSQL no write to the events table waits on an index build:

* the column is added with a constant DEFAULT, which PostgreSQL 11+ records without
  rewriting the table, and the DEFAULT stays (``db_default``), so the processes of the
  previous release, which insert without the column, keep working during the deploy;
* the unique index on (event_id, endpoint) and the index on (endpoint, received_at) are
  built with CREATE INDEX CONCURRENTLY, which never blocks inserts and updates;
* the new unique constraint is attached to its finished index (``UNIQUE USING INDEX``)
  before the old one on event_id is dropped, so no moment is without a unique constraint;
* each statement that takes the table's exclusive lock (ADD COLUMN, ADD and DROP
  CONSTRAINT) gives up after 1 second (``lock_timeout``) and tries again, so that it never
  queues deliveries behind a long transaction for longer than that.

Every step checks what is already there, so ``migrate`` can run again after an
interruption. Other databases run Django's own operations (SQLite rebuilds the table).
Going back fails, as it should, when two endpoints hold the same event id.
"""

import time

import django_klarefi.endpoint_model
from django.db import OperationalError, migrations, models, transaction

TABLE = "django_klarefi_event"
UNIQUE = "klarefi_event_unique_id"
ENDPOINT_INDEX = "klarefi_event_endpoint"
OLD_UNIQUE = "django_klarefi_event_event_id_key"
LOCK_TIMEOUT = "1s"
LOCK_ATTEMPTS = 30


def _briefly(connection, sql):
    """Run ``sql``, which takes the table's ACCESS EXCLUSIVE lock, waiting at most
    LOCK_TIMEOUT for it (each try in its own transaction); try again after a pause."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(sql)
            return
        except OperationalError as exc:
            cause = exc.__cause__
            code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
            if code != "55P03" or attempt + 1 == LOCK_ATTEMPTS:  # lock_not_available
                raise
            time.sleep(0.5)


def _one(connection, sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _execute(connection, sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _build_index(connection, name, definition):
    """CREATE [UNIQUE] INDEX CONCURRENTLY, after dropping an invalid leftover of an
    interrupted build of the same name."""
    valid = _one(
        connection,
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        [f'"{name}"'],
    )
    if valid is False:
        _execute(connection, f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    _execute(connection, definition)


def _constraint_exists(connection, name):
    return bool(
        _one(
            connection,
            "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
            [TABLE, name],
        )
    )


def _unique_constraints_on_event_id_only(connection):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum] "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'u' AND a.attname = 'event_id'",
            [TABLE],
        )
        return [row[0] for row in cursor.fetchall()]


def _like_index(schema_editor):
    # The name Django gave the varchar_pattern_ops index of the unique event_id column.
    return schema_editor._create_index_name(TABLE, ["event_id"], suffix="_like")


def postgres_forwards(schema_editor):
    connection = schema_editor.connection
    _briefly(
        connection,
        f'ALTER TABLE "{TABLE}" ADD COLUMN IF NOT EXISTS "endpoint" varchar(64) '
        "DEFAULT 'default' NOT NULL",
    )
    if not _constraint_exists(connection, UNIQUE):
        _build_index(
            connection,
            UNIQUE,
            f'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "{UNIQUE}" '
            f'ON "{TABLE}" ("event_id", "endpoint")',
        )
        _briefly(
            connection, f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{UNIQUE}" UNIQUE USING INDEX "{UNIQUE}"'
        )
    for name in _unique_constraints_on_event_id_only(connection):
        _briefly(connection, f'ALTER TABLE "{TABLE}" DROP CONSTRAINT "{name}"')
    _execute(connection, f'DROP INDEX CONCURRENTLY IF EXISTS "{_like_index(schema_editor)}"')
    _build_index(
        connection,
        ENDPOINT_INDEX,
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{ENDPOINT_INDEX}" '
        f'ON "{TABLE}" ("endpoint", "received_at" DESC)',
    )


def postgres_backwards(schema_editor):
    connection = schema_editor.connection
    like = _like_index(schema_editor)
    if not _unique_constraints_on_event_id_only(connection):
        _build_index(
            connection,
            OLD_UNIQUE,
            f'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "{OLD_UNIQUE}" ON "{TABLE}" ("event_id")',
        )
        _briefly(
            connection,
            f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{OLD_UNIQUE}" UNIQUE USING INDEX "{OLD_UNIQUE}"',
        )
    _build_index(
        connection,
        like,
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{like}" ON "{TABLE}" ("event_id" varchar_pattern_ops)',
    )
    _execute(connection, f'DROP INDEX CONCURRENTLY IF EXISTS "{ENDPOINT_INDEX}"')
    _briefly(connection, f'ALTER TABLE "{TABLE}" DROP CONSTRAINT IF EXISTS "{UNIQUE}"')
    _briefly(connection, f'ALTER TABLE "{TABLE}" DROP COLUMN IF EXISTS "endpoint"')


class ConcurrentlyOnPostgres(migrations.SeparateDatabaseAndState):
    """Django's ``operations`` everywhere in the state, and in the database everywhere
    but on PostgreSQL, where the steps above replace them."""

    def __init__(self, operations):
        super().__init__(database_operations=operations, state_operations=operations)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            postgres_forwards(schema_editor)
            return
        # Elsewhere all or nothing, as an atomic migration would be (SQLite's rebuild of
        # the table leaves a new__ table behind when it stops half-way outside one).
        with transaction.atomic(using=schema_editor.connection.alias):
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            postgres_backwards(schema_editor)
            return
        with transaction.atomic(using=schema_editor.connection.alias):
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def deconstruct(self):
        return (self.__class__.__name__, [self.state_operations], {})

    def describe(self):
        return "Event.endpoint, and event_id unique per endpoint (concurrently on PostgreSQL)"


class CreateModelIfMissing(migrations.CreateModel):
    """CreateModel, and its reverse, that skip what is already done: this migration is
    not atomic, so a run that stopped half-way must be able to run again."""

    def _exists(self, schema_editor, to_state_or_from_state, app_label):
        model = to_state_or_from_state.apps.get_model(app_label, self.name)
        return model._meta.db_table in schema_editor.connection.introspection.table_names()

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not self._exists(schema_editor, to_state, app_label):
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if self._exists(schema_editor, from_state, app_label):
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('django_klarefi', '0002_payload_field_test_events'),
    ]

    operations = [
        ConcurrentlyOnPostgres(
            [
                migrations.AddField(
                    model_name='event',
                    name='endpoint',
                    field=models.CharField(db_default='default', default='default', help_text='The name of the endpoint that received it.', max_length=64, verbose_name='endpoint'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='event_id',
                    field=models.CharField(help_text="The payload's id, or sha256:<digest of the body> when it has none.", max_length=255, verbose_name='event id'),
                ),
                migrations.AddIndex(
                    model_name='event',
                    index=models.Index(fields=['endpoint', '-received_at'], name='klarefi_event_endpoint'),
                ),
                migrations.AddConstraint(
                    model_name='event',
                    constraint=models.UniqueConstraint(fields=('event_id', 'endpoint'), name='klarefi_event_unique_id'),
                ),
            ]
        ),
        CreateModelIfMissing(
            name='Endpoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='Part of the delivery URL: /webhooks/klarefi/<name>. Lower-case letters, digits, hyphens and underscores.', max_length=64, unique=True, validators=[django_klarefi.endpoint_model.validate_endpoint_name], verbose_name='name')),
                ('encrypted_secret', models.TextField(editable=False, verbose_name='encrypted secret')),
                ('encrypted_previous_secret', models.TextField(blank=True, default='', editable=False, verbose_name='encrypted previous secret')),
                ('previous_secret_expires_at', models.DateTimeField(blank=True, editable=False, null=True, verbose_name='previous secret valid until')),
                ('is_active', models.BooleanField(default=True, help_text='An inactive endpoint answers 404.', verbose_name='active')),
                ('tolerance', models.PositiveIntegerField(blank=True, help_text="Seconds a signature's timestamp may be off. Empty: KLAREFI_WEBHOOK_TOLERANCE.", null=True, verbose_name='tolerance')),
                ('processing', models.CharField(blank=True, choices=[('sync', 'sync'), ('task', 'task')], help_text='Run handlers in the request (sync) or queue them (task). Empty: KLAREFI_PROCESSING.', max_length=8, verbose_name='processing')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
            ],
            options={
                'verbose_name': 'Klarefi endpoint',
                'verbose_name_plural': 'Klarefi endpoints',
                'ordering': ['name'],
            },
        ),
    ]
