"""The locks an attempt holds, taken so that nothing ever waits, and bounded in time.

:func:`lock_event` locks a stored event's row for an attempt (``NOWAIT``): a second attempt
at the same event elsewhere gets :attr:`Lock.BUSY` at once instead of waiting. The claim on
a new event's id (an advisory lock, :func:`claim`), the other way a delivery avoids waiting,
is taken with its INSERT (see :mod:`django_klarefi.storing`). SQLite has no row locks: it
writes one transaction at a time, and :func:`lock_event` falls back to that.

:func:`begin_attempt` bounds how long these locks can outlive a process that stopped
talking to PostgreSQL mid-attempt (a frozen host, a partition): see
``KLAREFI_IDLE_TRANSACTION_TIMEOUT``; and it sets the attempt's transaction apart, so that
:func:`in_attempt_sql` tells whether a receiver has ended it.
"""

from __future__ import annotations

import enum
from datetime import timedelta

from django.db import DatabaseError, connections
from django.db.models import F

from django_klarefi.conf import DEFAULT_IDLE_TRANSACTION_TIMEOUT, conf
from django_klarefi.endpoint_settings import DEFAULT_ENDPOINT
from django_klarefi.models import Event

__all__ = [
    "ADVISORY_LOCK_CLASS",
    "ATTEMPT_SETTING",
    "Lock",
    "attempt_settings_sql",
    "begin_attempt",
    "claim",
    "claim_key",
    "idle_timeout_ms",
    "in_attempt_sql",
    "is_lock_not_available",
    "lock_event",
]


class Lock(enum.Enum):
    """Why :func:`lock_event` gives no row."""

    #: No row has the event id (never stored, or deleted meanwhile).
    MISSING = "missing"
    #: Another transaction holds the row's lock: an attempt is running on it elsewhere.
    BUSY = "busy"


def lock_event(using: str, endpoint: str, event_id: str) -> Event | Lock:
    """The endpoint's event's row, locked for this transaction, or why there is none.

    On PostgreSQL (and other databases with ``SELECT ... FOR UPDATE NOWAIT``) a row that
    another transaction has locked gives ``Lock.BUSY`` at once. The lock is ``FOR NO KEY
    UPDATE`` where the database has it: it does not conflict with the ``KEY SHARE`` locks
    that inserting rows with a foreign key to the event take.
    """
    connection = connections[using]
    events = Event.objects.using(using).filter(event_id=event_id, endpoint=endpoint)
    if connection.features.has_select_for_update_nowait:
        no_key = connection.features.has_select_for_no_key_update
        try:
            row = events.select_for_update(nowait=True, no_key=no_key).first()
        except DatabaseError as exc:
            if is_lock_not_available(exc):
                return Lock.BUSY
            raise
        return Lock.MISSING if row is None else row
    # SQLite has no row locks: write before reading, so that this transaction takes the
    # database's write lock first (waiting out the busy timeout) and attempts run one at
    # a time. The UPDATE changes nothing.
    events.update(attempts=F("attempts"))
    row = events.first()
    return Lock.MISSING if row is None else row


#: A PostgreSQL setting that names, for as long as its transaction lasts (``SET LOCAL``),
#: the attempt it belongs to. The attempt's record is written only where it still holds:
#: a receiver that ran a raw ``COMMIT`` or ``ROLLBACK`` has ended the attempt's
#: transaction (and its locks), even if the driver has begun another since.
ATTEMPT_SETTING = "django_klarefi.attempt"


# The first key of django-klarefi's PostgreSQL advisory locks (the second is a hash of the
# event id), so that they do not meet the advisory locks of other code: "klar" in ASCII.
ADVISORY_LOCK_CLASS = 0x6B6C6172


def claim(using: str, endpoint: str, event_id: str) -> bool:
    """On PostgreSQL, claim the endpoint's ``event_id`` for this transaction; False when
    another holds it. Elsewhere always True (SQLite writes one transaction at a time)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
            [ADVISORY_LOCK_CLASS, claim_key(endpoint, event_id)],
        )
        return bool(cursor.fetchone()[0])


def claim_key(endpoint: str, event_id: str) -> str:
    """What a claim hashes: the event id, after the endpoint's name unless it is the
    default one (so that the default endpoint's claims are those of the release before
    endpoints, which may still serve during a deploy). Names are slugs, with no colon."""
    return event_id if endpoint == DEFAULT_ENDPOINT else f"{endpoint}:{event_id}"


def idle_timeout_ms() -> int | None:
    """``KLAREFI_IDLE_TRANSACTION_TIMEOUT`` in milliseconds, or None when unbounded; a value
    check E014 reports (not positive, not a duration) is read as the default."""
    value = conf.IDLE_TRANSACTION_TIMEOUT
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        value = timedelta(seconds=value)
    if not (isinstance(value, timedelta) and value > timedelta(0)):
        value = DEFAULT_IDLE_TRANSACTION_TIMEOUT
    return max(1, int(value.total_seconds() * 1000))


def attempt_settings_sql(token: str) -> tuple[str, list[str]]:
    """PostgreSQL select-list items (each after a comma) that ``SET LOCAL`` an attempt's
    settings: its :data:`ATTEMPT_SETTING`, and the idle bound (:func:`begin_attempt`). A
    first delivery's claim statement carries them, so they cost no round trip there."""
    sql, params = ", set_config(%s, %s, true)", [ATTEMPT_SETTING, token]
    timeout = idle_timeout_ms()
    if timeout is not None:
        sql += ", set_config('idle_in_transaction_session_timeout', %s, true)"
        params.append(str(timeout))
    return sql, params


def begin_attempt(using: str, token: str) -> None:
    """On PostgreSQL, set an attempt's transaction apart (:data:`ATTEMPT_SETTING`), and end
    its session if it stays idle longer than ``KLAREFI_IDLE_TRANSACTION_TIMEOUT``.

    An attempt holds its event's claim or row lock until it commits. If its process stops
    talking to the database mid-attempt (a frozen host, a network partition, a worker
    killed while the socket stays open behind a NAT or a pooler), the server would keep
    the session, and the locks, until TCP keepalives notice: about 2 h 11 min by default,
    past Klarefi's last retry. The bound counts only the time between statements, so a
    receiver may run as long as it likes while a query of its own runs. ``SET LOCAL``
    lasts the transaction: it works behind PgBouncer in transaction pooling too.
    """
    connection = connections[using]
    if connection.vendor != "postgresql" or not token:
        return
    sql, params = attempt_settings_sql(token)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1" + sql, params)


def in_attempt_sql(using: str, token: str) -> tuple[str, list[str]]:
    """A SQL condition (and its parameters) that holds only in the transaction
    :func:`begin_attempt` (or a claim statement with :func:`attempt_settings_sql`) set
    apart as ``token``'s; ``("", [])`` where the database needs none (SQLite: a raw COMMIT
    leaves it in autocommit, which the attempt sees), or for an attempt nested in another
    transaction (``token`` is "": the outer one is set apart, if it is an attempt)."""
    if connections[using].vendor != "postgresql" or not token:
        return "", []
    return "current_setting(%s, true) = %s", [ATTEMPT_SETTING, token]


def is_lock_not_available(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    # PostgreSQL's lock_not_available (psycopg 3: sqlstate, psycopg2: pgcode); MySQL's
    # ER_LOCK_NOWAIT.
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == "55P03" or getattr(cause, "args", (None,))[:1] == (3572,)
