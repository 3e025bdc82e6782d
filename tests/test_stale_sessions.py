"""A process that stops talking to PostgreSQL mid-attempt does not hold its event for hours.

The break (issue 15, section 4): a receiver is running when its host freezes or the
network partitions. The process is killed (gunicorn's timeout, a worker's supervisor),
but nothing reaches PostgreSQL: the session stays ``idle in transaction``, holding the
event's claim (a first delivery) or its row lock (a stored event), until TCP keepalives
notice, after about 2 h 11 min by default. Every redelivery meanwhile finds the event
busy and is answered 409, and Klarefi's retries stop 2 h 36 min after the first attempt.

Here the process reaches PostgreSQL through a TCP proxy that the test freezes (it carries
nothing more and closes nothing, ``tests.raceapp.proxy``), then the process is killed
outright. With ``KLAREFI_IDLE_TRANSACTION_TIMEOUT`` (3 s in tests/settings_stale.py),
PostgreSQL ends the stale session once it has been idle that long, and a redelivery,
reaching the database on a connection of its own, is processed. With the bound off
(``KLAREFI_TEST_IDLE_TIMEOUT=none``) these tests fail: the redeliveries are answered 409
for as long as they are tried.

Each runs with its servers connected directly and through PgBouncer in transaction
pooling mode (tests/pgbouncer.py), where ``SET LOCAL`` bounds the transaction all the
same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from django_klarefi.models import Event
from tests.pgbouncer import ROUTES
from tests.raceapp.delivery import Answer, Delivery, post, wait_for
from tests.raceapp.handlers import committed_runs, handler_runs, race_payload
from tests.raceapp.proxy import CuttableProxy
from tests.servers import django_process, gunicorn
from tests.test_races import prepare_task_tables

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres]

SETTINGS = "tests.settings_stale"
#: How long the tests redeliver while the answer is 409: ten times the bound of 3 s, and
#: far short of the hours that TCP keepalives take.
PATIENCE_SECONDS = 30


def redeliver_while_in_flight(base: str, delivery: Delivery) -> list[Answer]:
    """Redeliver, as Klarefi's retries would, while the answer is 409 ``in_flight``, for
    up to ``PATIENCE_SECONDS``; every answer, the last one first not 409 (if any)."""
    answers: list[Answer] = []
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        answers.append(post(base, delivery, timeout=30))
        if answers[-1].status != 409:
            break
        time.sleep(0.2)
    return answers


def assert_freed_within_the_bound(answers: list[Answer], event_id: str, status: str) -> None:
    *waiting, last = answers
    assert last.status != 409, (
        f"still answered 409 after {PATIENCE_SECONDS}s: the stale session holds the event"
    )
    for answer in waiting:  # while the stale session lived: retry later, nothing else
        assert answer.json == {"status": "in_flight", "event_id": event_id}
    assert (last.status, last.json) == (200, {"status": status, "event_id": event_id})


def handler_pid(log: Path) -> int:
    return int(log.read_text().split()[0])


def start_in_thread(call: Callable[[], object]) -> list[object]:
    """Run ``call`` in a thread; its result, or the exception it raised, lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome


@pytest.mark.parametrize("servers_database", ROUTES, indirect=True)
def test_a_first_delivery_frozen_mid_receiver_is_redelivered_within_the_bound(
    tmp_path, servers_database
):
    """Sync mode, the claim: the first delivery's INSERT is uncommitted and its claim on
    the event id held when its worker freezes and is killed."""
    log, release = tmp_path / "runs.log", tmp_path / "release"
    delivery = Delivery.of(race_payload("evt_frozen", log, hold_until=release))

    with CuttableProxy(servers_database) as proxy, contextlib.ExitStack() as stack:
        stack.callback(release.touch)  # never leave a handler hanging
        env = {"KLAREFI_PG_PORT": str(proxy.port), "KLAREFI_TEST_PROCESSING": "sync"}
        base = stack.enter_context(gunicorn(workers=2, settings_module=SETTINGS, env=env))
        first = start_in_thread(lambda: post(base, delivery))
        wait_for(lambda: handler_runs(log)["evt_frozen"] == 1, what="the handler to start")

        # The host freezes mid-receiver (only that worker is connected), and the worker is
        # killed: PostgreSQL hears of neither.
        assert proxy.freeze() == 1
        os.kill(handler_pid(log), signal.SIGKILL)
        wait_for(lambda: first, what="the killed worker's connection to close")
        assert isinstance(first[0], OSError)  # no answer at all: Klarefi retries
        release.touch()

        # The other worker answers the redeliveries, on a connection of its own.
        answers = redeliver_while_in_flight(base, delivery)

    assert_freed_within_the_bound(answers, "evt_frozen", "processed")
    event = Event.objects.get()
    # The frozen attempt's INSERT was rolled back with its session; the redelivery stored it.
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 1)
    assert committed_runs("evt_frozen") == 1
    assert handler_runs(log) == {"evt_frozen": 2}


@pytest.mark.parametrize("servers_database", ROUTES, indirect=True)
def test_a_task_frozen_mid_receiver_is_redelivered_within_the_bound(tmp_path, servers_database):
    """Task mode, the row lock: a django-tasks-db worker holds the stored event's row lock
    when it freezes and is killed."""
    log, release = tmp_path / "runs.log", tmp_path / "release"
    delivery = Delivery.of(race_payload("evt_frozen_task", log, hold_until=release))
    task_env = {"KLAREFI_TEST_PROCESSING": "task"}
    prepare_task_tables()

    def worker(**env: str) -> contextlib.AbstractContextManager[object]:
        return django_process(
            "db_worker", "--interval", "0.05", "--no-startup-delay", "--queue-name", "*",
            settings_module=SETTINGS, env={**task_env, **env},
        )  # fmt: skip

    with CuttableProxy(servers_database) as proxy, contextlib.ExitStack() as stack:
        stack.callback(release.touch)
        base = stack.enter_context(gunicorn(workers=2, settings_module=SETTINGS, env=task_env))
        stack.enter_context(worker(KLAREFI_PG_PORT=str(proxy.port)))
        queued = post(base, delivery)
        assert (queued.status, queued.json["status"]) == (200, "queued")
        wait_for(lambda: handler_runs(log)["evt_frozen_task"] == 1, what="the task to start")

        assert proxy.freeze() >= 1
        os.kill(handler_pid(log), signal.SIGKILL)
        release.touch()

        # The redelivery finds the event pending, and queues it once the lock is free.
        answers = redeliver_while_in_flight(base, delivery)
        assert_freed_within_the_bound(answers, "evt_frozen_task", "queued")
        stack.enter_context(worker())
        wait_for(
            lambda: Event.objects.filter(status=Event.Status.PROCESSED).exists(),
            what="a second worker to process the event",
        )

    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 2)
    assert committed_runs("evt_frozen_task") == 1
    assert handler_runs(log) == {"evt_frozen_task": 2}
