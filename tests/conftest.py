from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client

from django_klarefi.models import Event
from django_klarefi.signals import EVENT_SIGNALS, event_received
from tests.testapp.models import HandlerRecord

SECRET = "whsec_test_secret_do_not_leak_7f3a"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # PostgreSQL-only tests are deselected on the SQLite pass, not skipped: the PostgreSQL
    # pass runs them, and KLAREFI_REQUIRE_POSTGRES makes that pass mandatory in CI.
    if os.environ.get("KLAREFI_TEST_DB") == "postgres":
        return
    selected, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("postgres") else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


#: ``KLAREFI_TEST_SERVERS_VIA=pgbouncer``: every test that starts servers or workers
#: (marked ``slow``) on PostgreSQL has them reach the database through a private PgBouncer
#: in transaction pooling mode (see ``servers_database``), to run whole files behind it.
SERVERS_VIA_PGBOUNCER = os.environ.get("KLAREFI_TEST_SERVERS_VIA") == "pgbouncer"


@pytest.fixture
def servers_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[int]:
    """The PostgreSQL port that the servers and workers this test starts connect to.

    ``"direct"``: the test database's own. ``"pgbouncer"`` (parametrize indirectly with
    ``tests.pgbouncer.ROUTES``): a private PgBouncer in transaction pooling mode in front
    of it, which ``KLAREFI_PG_*`` in the environment sends every subprocess through. The
    test process's own connection stays direct.
    """
    from django.db import connection

    from tests.pgbouncer import pgbouncer

    route = getattr(request, "param", "pgbouncer" if SERVERS_VIA_PGBOUNCER else "direct")
    database = connection.settings_dict
    port = int(database["PORT"] or 5432)
    if route == "direct":
        yield port
        return
    host, user, password = database["HOST"] or "127.0.0.1", database["USER"], database["PASSWORD"]
    with pgbouncer(host=host, port=port, user=user, password=password) as bouncer:
        monkeypatch.setenv("KLAREFI_PG_HOST", "127.0.0.1")
        monkeypatch.setenv("KLAREFI_PG_PORT", str(bouncer))
        monkeypatch.setenv("KLAREFI_PG_TRANSACTION_POOLING", "1")
        yield bouncer


@pytest.fixture(autouse=True)
def _servers_via_pgbouncer_if_asked(request: pytest.FixtureRequest) -> None:
    on_postgres = os.environ.get("KLAREFI_TEST_DB") == "postgres"
    if SERVERS_VIA_PGBOUNCER and on_postgres and request.node.get_closest_marker("slow"):
        request.getfixturevalue("servers_database")


@dataclass
class Handlers:
    """Receivers connected for one test: they record each call, in memory and in the DB."""

    calls: list[tuple[str, Event]] = field(default_factory=list)
    fail_with: BaseException | None = None
    on_call: Callable[[Event], Any] | None = None

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: type[Event], event: Event, **kwargs: Any) -> None:
            assert sender is Event
            self.calls.append((name, event))
            HandlerRecord.objects.create(event_id=event.event_id, handler=name)
            if self.on_call is not None:
                self.on_call(event)
            if self.fail_with is not None:
                raise self.fail_with

        return receive

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    recorder = Handlers()
    typed = recorder.receiver("typed")
    catch_all = recorder.receiver("event_received")
    for signal in EVENT_SIGNALS.values():
        signal.connect(typed, dispatch_uid="tests-typed")
    event_received.connect(catch_all, dispatch_uid="tests-catch-all")
    yield recorder
    for signal in EVENT_SIGNALS.values():
        signal.disconnect(dispatch_uid="tests-typed")
    event_received.disconnect(dispatch_uid="tests-catch-all")


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF like a real browser request would be checked."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture(autouse=True)
def _fresh_rejection_log() -> None:
    # Rejections of one client and reason are logged once a minute per process: each test
    # starts with none seen, so that its own first rejection is logged.
    from django_klarefi.rejections import REJECTION_LOG

    REJECTION_LOG.clear()
