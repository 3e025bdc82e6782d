"""``KLAREFI_IDLE_TRANSACTION_TIMEOUT``: what it does to an attempt in a live process.

On PostgreSQL the bound ends a session whose attempt stays idle longer than it between
two statements: a receiver that waits on something other than the database (an HTTP
call, a sleep) for longer fails its attempt, which is recorded like any failure and run
again by the redelivery. The claim and the row lock are gone with the session. SQLite
has no such setting and no session to end: the receiver finishes. The bound on a frozen
or killed process is in tests/test_stale_sessions.py.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.core import checks
from django.db import connection
from django.test import override_settings

from django_klarefi.conf import DEFAULT_IDLE_TRANSACTION_TIMEOUT
from django_klarefi.locks import idle_timeout_ms
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.testing import post_event
from tests.testapp.models import HandlerRecord

ON_POSTGRES = os.environ.get("KLAREFI_TEST_DB") == "postgres"
BOUND_SECONDS = 0.5


def case_completed() -> dict[str, str]:
    return {"id": "evt_idle", "event": "case.completed", "case_id": "case_1"}


def wait_past_the_bound(event: Event) -> None:
    time.sleep(BOUND_SECONDS * 3)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", ["first delivery", "redelivery", "process_event"])
def test_a_receiver_idle_past_the_bound_fails_its_attempt_and_runs_again(client, handlers, attempt):
    """The first delivery holds the claim on the event id, the others the row lock."""
    if attempt != "first delivery":
        handlers.fail_with = RuntimeError("fails once")
        assert post_event(client, case_completed()).status_code == 500
        handlers.fail_with = None
    attempts_before = Event.objects.values_list("attempts", flat=True).first() or 0

    handlers.on_call = wait_past_the_bound
    with override_settings(KLAREFI_IDLE_TRANSACTION_TIMEOUT=BOUND_SECONDS):
        if attempt == "process_event":
            outcome = process_event(Event.objects.get()).outcome
        else:
            response = post_event(client, case_completed())
            outcome = Outcome(response.json()["status"])
    event = Event.objects.get()

    if not ON_POSTGRES:  # no bound: the receivers finish
        assert outcome == Outcome.PROCESSED
        assert (event.status, event.attempts) == ("processed", attempts_before + 1)
        return
    # The session ended under the receivers: their writes are gone, the failure recorded.
    assert outcome == Outcome.FAILED
    assert (event.status, event.attempts) == ("failed", attempts_before + 1)
    assert "terminating connection due to idle-in-transaction timeout" in event.error
    assert not HandlerRecord.objects.exists()

    handlers.on_call = None
    again = post_event(client, case_completed())
    assert (again.status_code, again.json()["status"]) == (200, "processed")
    assert Event.objects.get().status == "processed"


def idle_timeout_of_this_session() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", ["first delivery", "redelivery"])
def test_the_bound_lasts_the_attempts_transaction_only(client, handlers, attempt):
    """``SET LOCAL``: the session keeps the server's setting once the attempt ends, so a
    pooler that hands the session to another client next (PgBouncer's transaction
    pooling) hands it over unchanged."""
    if attempt == "redelivery":
        handlers.fail_with = RuntimeError("fails once")
        assert post_event(client, case_completed()).status_code == 500
        handlers.fail_with = None
    seen: list[str] = []
    handlers.on_call = lambda event: seen.append(idle_timeout_of_this_session())
    server_setting = idle_timeout_of_this_session()

    with override_settings(KLAREFI_IDLE_TRANSACTION_TIMEOUT=42):
        response = post_event(client, case_completed())

    assert (response.status_code, response.json()["status"]) == (200, "processed")
    assert seen == ["42s", "42s"]  # in the attempt, for each receiver
    assert idle_timeout_of_this_session() == server_setting != "42s"


@pytest.mark.parametrize(
    ("value", "read_as"),
    [
        (timedelta(minutes=2), 120_000),
        (90, 90_000),
        (2.5, 2_500),
        (None, None),
    ],
)
def test_a_valid_bound_is_read_as_configured_with_no_check_message(settings, value, read_as):
    settings.KLAREFI_IDLE_TRANSACTION_TIMEOUT = value
    assert read_as == idle_timeout_ms()
    assert not [m for m in checks.run_checks() if m.id == "django_klarefi.E014"]


@pytest.mark.parametrize("value", [0, -5, True, "60", "60s", timedelta(0), timedelta(seconds=-60)])
def test_a_bad_bound_is_e014_and_read_as_the_default(settings, value):
    """Never read as "unbounded": a typo must not switch the bound off."""
    settings.KLAREFI_IDLE_TRANSACTION_TIMEOUT = value
    assert [m.id for m in checks.run_checks() if m.id == "django_klarefi.E014"] == [
        "django_klarefi.E014"
    ]
    assert idle_timeout_ms() == DEFAULT_IDLE_TRANSACTION_TIMEOUT.total_seconds() * 1000
