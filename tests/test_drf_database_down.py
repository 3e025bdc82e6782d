"""The events API when the database is unavailable: a JSON 503 with ``Retry-After`` and a
log line, as the receiver answers a delivery, never Django's 500 page.

The database is taken away for real, without touching the shared server: the test's
connection is pointed at a port where nothing listens (PostgreSQL) or at a file that
cannot be opened (SQLite), or, on PostgreSQL, through a TCP proxy that is cut while a
handler runs (``tests.raceapp.proxy``); then given back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIRequestFactory, force_authenticate

from django_klarefi.contrib.rest_framework import EventViewSet
from django_klarefi.models import Event
from tests.raceapp.proxy import CuttableProxy
from tests.servers import free_port
from tests.testapp.models import HandlerRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls_drf")]

UNAVAILABLE = {
    "error": "database_unavailable",
    "detail": "The database is unavailable. Try again later.",
}


class Database:
    """The test's default connection, which :meth:`cut` points at nothing."""

    def __init__(self, missing_file: str) -> None:
        self.saved = dict(connection.settings_dict)
        self.missing_file = missing_file

    def cut(self) -> None:
        connection.close()
        if connection.vendor == "postgresql":
            connection.settings_dict["PORT"] = str(free_port())
        else:
            connection.settings_dict["NAME"] = self.missing_file

    def restore(self) -> None:
        connection.close()
        connection.settings_dict.update(self.saved)


@pytest.fixture
def database(tmp_path) -> Iterator[Database]:
    database = Database(str(tmp_path / "no-such-directory" / "db.sqlite3"))
    yield database
    database.restore()


def failed_event() -> Event:
    now = timezone.now()
    return Event.objects.create(
        received_at=now,
        last_received_at=now,
        event_id="evt_down",
        event_type="case.completed",
        payload={"id": "evt_down", "event": "case.completed"},
        status=Event.Status.FAILED,
        attempts=1,
        error="Traceback: old",
    )


def operator() -> User:
    return User.objects.create_superuser("operator", password="unused")


def assert_unavailable(response, caplog) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == UNAVAILABLE
    assert response["Retry-After"] == "60"
    [record] = [
        record
        for record in caplog.records
        if record.name.startswith("django_klarefi")
        and record.getMessage().startswith("Klarefi events API")
    ]
    assert record.levelno == logging.ERROR
    assert record.getMessage().endswith("not answered: the database is unavailable.")
    assert record.exc_info
    assert issubclass(record.exc_info[0], OperationalError)


@pytest.mark.parametrize(
    ("method", "route", "accept"),
    [
        ("post", "event-reprocess", "application/json"),
        ("post", "event-reprocess", "text/html"),
        ("get", "event-detail", "text/html"),
        ("get", "event-list", "application/json"),
    ],
)
def test_database_unreachable_answers_json_503_with_retry_after(
    client, database, handlers, caplog, method, route, accept
):
    event = failed_event()
    client.force_login(operator())
    args = [] if route == "event-list" else [event.pk]
    database.cut()
    with caplog.at_level(logging.DEBUG, logger="django_klarefi"):
        response = getattr(client, method)(
            reverse(f"django_klarefi_api:{route}", args=args), headers={"Accept": accept}
        )
    database.restore()
    assert_unavailable(response, caplog)
    assert handlers.calls == []
    [record] = [record for record in caplog.records if record.name.startswith("django_klarefi")]
    assert record.getMessage().startswith(f"Klarefi events API: {method.upper()} /api/klarefi/")


def test_database_going_away_before_the_attempt_answers_503_and_changes_nothing(
    database, handlers, caplog
):
    class CutAfterTheLookup(EventViewSet):
        # The database goes away between this request's lookup and the attempt.
        def get_object(self):
            event = super().get_object()
            database.cut()
            return event

    event = failed_event()
    request = APIRequestFactory().post(f"/events/{event.pk}/reprocess/")
    force_authenticate(request, user=operator())
    with caplog.at_level(logging.DEBUG, logger="django_klarefi"):
        response = CutAfterTheLookup.as_view({"post": "reprocess"})(request, pk=event.pk)
    database.restore()
    assert_unavailable(response, caplog)
    assert handlers.calls == []
    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == ("failed", 1, "Traceback: old")


@pytest.mark.postgres
def test_database_going_away_while_a_handler_runs_answers_503_and_leaves_nothing(
    client, database, handlers, caplog
):
    event = failed_event()
    client.force_login(operator())
    url = reverse("django_klarefi_api:event-reprocess", args=[event.pk])
    with CuttableProxy(int(connection.settings_dict["PORT"] or 5432)) as proxy:
        connection.close()
        connection.settings_dict["PORT"] = str(proxy.port)
        # After the handler's own write, inside the attempt's transaction.
        handlers.on_call = lambda received: proxy.cut()
        with caplog.at_level(logging.DEBUG, logger="django_klarefi"):
            response = client.post(url)
        database.restore()
    assert_unavailable(response, caplog)
    assert handlers.names[0] == "typed"  # it ran, and wrote its HandlerRecord, before the cut
    # Nothing half-written: the attempt and the handler's write were rolled back.
    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == ("failed", 1, "Traceback: old")
    assert not HandlerRecord.objects.exists()
    # The database is back: the same request reprocesses the event.
    handlers.on_call = None
    response = client.post(url)
    assert response.json()["outcome"] == "processed"
    assert HandlerRecord.objects.count() == 2
