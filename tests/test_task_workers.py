"""Task mode on a real engine: django-tasks-db's ``db_worker`` as separate processes.

PostgreSQL only: gunicorn, the workers and this test share the test database. The servers
and workers run on tests.settings_tasks (backend "webhooks", queue "klarefi"), whose
tests.taskapp handlers write one HandlerRecord per run, so every side effect is counted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.signals import EVENT_SIGNALS
from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET
from tests.servers import django_process, gunicorn
from tests.testapp.models import HandlerRecord

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SETTINGS = "tests.settings_tasks"
TASK_TABLE = "django_tasks_database_dbtaskresult"
RETRY_LATER = {409, 503}


# -- Helpers ----------------------------------------------------------------------------


def signed(payload: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, sign_webhook_payload(body, SECRET)


def post(base: str, delivery: tuple[bytes, str]) -> tuple[int, dict[str, Any]]:
    body, signature = delivery
    request = urllib.request.Request(
        base + "/webhooks/klarefi/",
        data=body,
        headers={"Content-Type": "application/json", "X-Klarefi-Signature": signature},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def deliver(base: str, delivery: tuple[bytes, str]) -> list[int]:
    """Deliver until accepted, retrying 409/503 as Klarefi does; every status answered."""
    statuses: list[int] = []
    for _ in range(100):
        status, _ = post(base, delivery)
        statuses.append(status)
        if status not in RETRY_LATER:
            break
        time.sleep(0.1)
    return statuses


def wait_for(condition: Any, *, what: str, timeout: float = 120) -> None:
    """Poll until ``condition()`` is true: a wait for other processes, not a timing check."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.1)


def task_rows() -> list[tuple[str, Any, list[str]]]:
    """(status, return value, worker ids) of every task django-tasks-db stored."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, return_value, worker_ids FROM {TASK_TABLE}")
        return [
            (status, _json(value), _json(workers)) for status, value, workers in cursor.fetchall()
        ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def open_transactions() -> int:
    """Sessions on the test database that are idle inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def run_to_completion(*args: str) -> int:
    with django_process(*args, settings_module=SETTINGS) as process:
        return process.wait(timeout=300)


def worker(worker_id: str) -> Any:
    return django_process(
        "db_worker",
        "--backend",
        "webhooks",
        "--queue-name",
        "klarefi",
        "--interval",
        "0.1",
        "--no-startup-delay",
        "--worker-id",
        worker_id,
        settings_module=SETTINGS,
    )


@pytest.fixture
def task_table() -> Iterator[None]:
    """django-tasks-db's table in the test database (its app is not in tests.settings)."""
    assert run_to_completion("migrate", "--noinput") == 0
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TASK_TABLE}")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TASK_TABLE}")


# -- Every event processed exactly once, by two workers ---------------------------------

EVENTS = 40
TYPES = sorted(EVENT_SIGNALS)
DELIVERED_TWICE = 12


def test_two_workers_process_every_event_exactly_once(task_table):
    payloads = [
        {"id": f"evt_load_{n}", "event": TYPES[n % len(TYPES)], "case_id": f"c{n}"}
        for n in range(EVENTS)
    ]
    deliveries = [signed(payload) for payload in payloads]
    # Identical bytes delivered again, interleaved with the rest.
    sends = deliveries + deliveries[:DELIVERED_TWICE]
    random.Random(4).shuffle(sends)

    with gunicorn(workers=2, settings_module=SETTINGS) as base, worker("w1"), worker("w2"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            answered = list(pool.map(lambda delivery: deliver(base, delivery), sends))

        # Every delivery was finally accepted; retry-later answers are allowed, 500 is not.
        statuses = [status for statuses in answered for status in statuses]
        assert set(statuses) <= {200, *RETRY_LATER}, Counter(statuses)
        assert [statuses[-1] for statuses in answered] == [200] * len(sends)

        wait_for(
            lambda: Event.objects.filter(status="processed").count() == EVENTS,
            what="every event processed",
        )
        wait_for(
            lambda: all(status in ("SUCCESSFUL", "FAILED") for status, _, _ in task_rows()),
            what="every task finished",
        )

    events = Event.objects.all()
    assert len(events) == EVENTS
    assert {(event.status, event.attempts, event.error) for event in events} == {
        ("processed", 1, "")
    }
    assert sum(event.deliveries for event in events) == statuses.count(200)

    # Each handler ran once per event: one committed side effect each.
    runs = Counter(HandlerRecord.objects.values_list("event_id", "handler"))
    expected = {(p["id"], handler) for p in payloads for handler in ("typed", "event_received")}
    assert set(runs) == expected
    assert set(runs.values()) == {1}

    # Each event was processed by exactly one task; the extra tasks of redeliveries found
    # it processed (or in flight) and did nothing. Both workers are the only ones that ran.
    rows = task_rows()
    assert {status for status, _, _ in rows} == {"SUCCESSFUL"}
    outcomes = Counter(value for _, value, _ in rows)
    assert outcomes["processed"] == EVENTS
    assert set(outcomes) <= {"processed", "already_processed", "in_flight"}
    assert {worker_id for _, _, workers in rows for worker_id in workers} <= {"w1", "w2"}


# -- The worker dies mid-task --------------------------------------------------------------


def test_worker_killed_mid_task_leaves_the_event_pending_for_klarefi_reprocess(
    task_table, tmp_path: Path
):
    log, release = tmp_path / "started.log", tmp_path / "release"
    payload = {
        "id": "evt_killed",
        "event": "case.completed",
        "task_test": {"log": str(log), "hold_until": str(release)},
    }
    delivery = signed(payload)

    with (
        gunicorn(workers=1, settings_module=SETTINGS) as base,
        worker("w1") as first,
        worker("w2") as second,
    ):
        assert post(base, delivery) == (200, {"status": "queued", "event_id": "evt_killed"})

        # A worker is inside the handler, which has written its HandlerRecord
        # (uncommitted) and waits. Kill that worker outright.
        wait_for(lambda: log.exists() and log.read_text().strip(), what="the handler starting")
        pid = int(log.read_text().split()[0])
        running = {first.pid: first, second.pid: second}[pid]
        os.kill(pid, signal.SIGKILL)
        running.wait(timeout=30)

        # Its transaction died with its connection: the event is as it was before
        # the attempt, and the handler's write is gone.
        wait_for(lambda: open_transactions() == 0, what="PostgreSQL ending the session")
        event = Event.objects.get()
        assert (event.status, event.attempts) == ("pending", 0)
        assert not HandlerRecord.objects.exists()
        # django-tasks-db never retries a task whose worker died: it stays RUNNING.
        assert [status for status, _, _ in task_rows()] == ["RUNNING"]

        # The recovery path: klarefi_reprocess --pending --older-than ...
        recover_the_killed_event(
            event,
            release=release,
            log=log,
            reprocess=lambda *args: run_to_completion("klarefi_reprocess", *args),
            redeliver=lambda: post(base, delivery),
        )
    assert HandlerRecord.objects.count() == 2
    assert len(log.read_text().splitlines()) == 2


def recover_the_killed_event(event, *, release, log, reprocess, redeliver) -> None:
    """After a worker was killed mid-task: ``klarefi_reprocess --pending --older-than 1s``
    (``reprocess(*args)`` runs it and returns its exit code) processes the event once, and
    Klarefi's retry (``redeliver()``) then finds it processed. Shared by every engine."""
    release.touch()
    wait_for(
        lambda: Event.objects.filter(received_at__lt=_ago(seconds=1)).exists(),
        what="the event being older than 1s",
    )
    assert reprocess("--pending", "--older-than", "1s") == 0

    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == ("processed", 1, "")
    assert sorted(HandlerRecord.objects.values_list("handler", flat=True)) == [
        "event_received",
        "typed",
    ]
    # The handler started twice (killed, then recovered) and committed once.
    assert len(log.read_text().splitlines()) == 2

    # Klarefi's retry of the delivery now finds it processed: nothing runs again.
    assert redeliver() == (200, {"status": "already_processed", "event_id": event.event_id})


def _ago(*, seconds: float) -> datetime:
    return timezone.now() - timedelta(seconds=seconds)


# -- Receivers that touch their own event ---------------------------------------------------

MEDDLING = ("refresh", "refresh_and_save", "update")


def test_receivers_that_touch_their_event_never_decide_its_bookkeeping(task_table, tmp_path):
    # The adversarial run's break: a receiver's refresh_from_db() left queued events pending
    # with 0 attempts after their task ran, and a failed event's redelivery failed after it
    # succeeded, so klarefi_reprocess ran their receivers again. Real gunicorn (sync and task
    # mode) and a real django-tasks-db worker.
    fixed = tmp_path / "fixed"
    task_payloads = [
        {"id": f"evt_meddle_{m}", "event": "case.completed", "task_test": {"meddle": m}}
        for m in MEDDLING
    ]
    failing = [
        {
            "id": f"evt_meddle_failed_{m}",
            "event": "case.completed",
            "task_test": {"meddle": m, "fail_unless": str(fixed)},
        }
        for m in MEDDLING
    ]
    with gunicorn(workers=1, settings_module=SETTINGS) as base, worker("w1"):
        for payload in task_payloads:
            assert deliver(base, signed(payload))[-1] == 200
        wait_for(
            lambda: Event.objects.filter(status="processed").count() == len(MEDDLING),
            what="every queued event processed",
        )
    sync = {"KLAREFI_TEST_PROCESSING": "sync"}
    with gunicorn(workers=1, settings_module=SETTINGS, env=sync) as base:
        for payload in failing:
            assert post(base, signed(payload))[0] == 500
        fixed.touch()
        for payload in failing:
            assert post(base, signed(payload)) == (
                200,
                {"status": "processed", "event_id": payload["id"]},
            )
    rows = {e.event_id: (e.status, e.attempts, e.deliveries, e.error) for e in Event.objects.all()}
    for payload in task_payloads:
        assert rows[payload["id"]] == ("processed", 1, 1, "")
    for payload in failing:
        assert rows[payload["id"]] == ("processed", 2, 2, "")
    # Nothing is left for the documented cron to run again.
    assert run_to_completion("klarefi_reprocess", "--pending", "--failed") == 0
    runs = Counter(HandlerRecord.objects.values_list("event_id", "handler"))
    assert set(runs.values()) == {1}
