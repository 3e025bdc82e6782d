"""Task mode on a second real engine: django-tasks-rq, RQ workers and a Redis server.

The same scenarios as on django-tasks-db (tests/test_task_workers.py, whose helpers are
reused): two workers process every event exactly once; a worker killed mid-task loses
nothing; events are enqueued only after their row commits. The tests start Debian's
``redis-server`` on 127.0.0.1, on a free port, in a temporary directory, and stop it at the
end. The servers and workers run on tests.settings_tasks_rq (backend "webhooks", queue
"klarefi").

Without ``redis-server`` installed these tests are skipped, except where
``KLAREFI_REQUIRE_POSTGRES`` is set (CI, whose .ci/run installs it): there they fail.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django
import pytest
from django.db import transaction
from django.test import override_settings
from redis import Redis
from rq import Queue
from rq.job import Job

from django_klarefi import tasks
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, receive_event
from django_klarefi.testing import encode_event
from tests.servers import django_process, free_port, gunicorn
from tests.test_task_workers import (
    DELIVERED_TWICE,
    EVENTS,
    RETRY_LATER,
    TYPES,
    deliver,
    open_transactions,
    post,
    recover_the_killed_event,
    signed,
    wait_for,
)
from tests.testapp.models import HandlerRecord

REDIS_SERVER = shutil.which("redis-server")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        REDIS_SERVER is None and not os.environ.get("KLAREFI_REQUIRE_POSTGRES"),
        reason="Debian's redis-server is not installed (.ci/run installs it)",
    ),
]

SETTINGS = "tests.settings_tasks_rq"
QUEUE = "klarefi"


# -- Redis, workers and what RQ recorded ----------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of our own: 127.0.0.1, a free port, a temporary directory, no disk."""
    assert REDIS_SERVER is not None, "redis-server is required here: apt-get install redis-server"
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [
        REDIS_SERVER,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    server = subprocess.Popen(command, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = Redis.from_url(url)
        wait_for(lambda: _answers(client), what="redis-server answering PING", timeout=30)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except OSError:
        return False
    except Exception as error:  # redis.ConnectionError is not an OSError
        if type(error).__name__ in {"ConnectionError", "BusyLoadingError"}:
            return False
        raise


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """The test's Redis, emptied before and after."""
    client = Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.flushall()


def rq_env(redis_url: str) -> dict[str, str]:
    return {"KLAREFI_TEST_REDIS_URL": redis_url}


def worker(redis_url: str, name: str) -> contextlib.AbstractContextManager[Any]:
    """An RQ worker on the "klarefi" queue, with django-tasks-rq's job class."""
    return django_process(
        "rqworker",
        QUEUE,
        "--job-class",
        "django_tasks_rq.Job",
        "--name",
        name,
        settings_module=SETTINGS,
        env=rq_env(redis_url),
    )


def run_to_completion(redis_url: str, *args: str) -> int:
    with django_process(*args, settings_module=SETTINGS, env=rq_env(redis_url)) as process:
        return process.wait(timeout=300)


def jobs(redis: Redis) -> list[Job]:
    """Every job RQ knows on the queue: waiting, running, finished or failed."""
    queue = Queue(QUEUE, connection=redis)
    ids = {
        *queue.job_ids,
        *queue.started_job_registry.get_job_ids(),
        *queue.finished_job_registry.get_job_ids(),
        *queue.failed_job_registry.get_job_ids(),
    }
    return [job for job in Job.fetch_many(sorted(ids), connection=redis) if job is not None]


def _status(job: Job) -> str:
    status = job.get_status()
    return "" if status is None else str(status.value)


def finished(redis: Redis) -> list[tuple[str, Any, str]]:
    """(status, return value, worker name) of every job that ran to its end."""
    rows = []
    for job in jobs(redis):
        result = job.latest_result()
        rows.append(
            (
                _status(job),
                None if result is None else result.return_value,
                None if result is None else result.worker_name,
            )
        )
    return rows


# -- Every event processed exactly once, by two workers ---------------------------------


@pytest.mark.postgres
def test_two_rq_workers_process_every_event_exactly_once(redis, redis_url):
    payloads = [
        {"id": f"evt_rq_{n}", "event": TYPES[n % len(TYPES)], "case_id": f"c{n}"}
        for n in range(EVENTS)
    ]
    deliveries = [signed(payload) for payload in payloads]
    sends = deliveries + deliveries[:DELIVERED_TWICE]
    random.Random(5).shuffle(sends)

    with (
        gunicorn(workers=2, settings_module=SETTINGS, env=rq_env(redis_url)) as base,
        worker(redis_url, "rq1"),
        worker(redis_url, "rq2"),
    ):
        with ThreadPoolExecutor(max_workers=8) as pool:
            answered = list(pool.map(lambda delivery: deliver(base, delivery), sends))

        statuses = [status for statuses in answered for status in statuses]
        assert set(statuses) <= {200, *RETRY_LATER}, Counter(statuses)
        assert [statuses[-1] for statuses in answered] == [200] * len(sends)

        wait_for(
            lambda: Event.objects.filter(status="processed").count() == EVENTS,
            what="every event processed",
        )
        wait_for(
            lambda: all(status in ("finished", "failed") for status, _, _ in finished(redis)),
            what="every job finished",
        )

    events = Event.objects.all()
    assert len(events) == EVENTS
    assert {(event.status, event.attempts, event.error) for event in events} == {
        ("processed", 1, "")
    }
    assert sum(event.deliveries for event in events) == statuses.count(200)

    runs = Counter(HandlerRecord.objects.values_list("event_id", "handler"))
    expected = {(p["id"], handler) for p in payloads for handler in ("typed", "event_received")}
    assert set(runs) == expected
    assert set(runs.values()) == {1}

    # One job per "queued" answer; exactly one per event did the work, and no job ever
    # found its row missing: each was enqueued after its row had committed.
    rows = finished(redis)
    assert EVENTS <= len(rows) <= statuses.count(200)
    assert {status for status, _, _ in rows} == {"finished"}
    outcomes = Counter(value for _, value, _ in rows)
    assert outcomes["processed"] == EVENTS
    assert set(outcomes) <= {"processed", "already_processed", "in_flight"}
    assert {name for _, _, name in rows} <= {"rq1", "rq2"}


# -- The worker dies mid-task --------------------------------------------------------------


@pytest.mark.postgres
def test_rq_worker_killed_mid_task_leaves_the_event_pending_for_klarefi_reprocess(
    redis, redis_url, tmp_path: Path
):
    log, release = tmp_path / "started.log", tmp_path / "release"
    payload = {
        "id": "evt_rq_killed",
        "event": "case.completed",
        "task_test": {"log": str(log), "hold_until": str(release)},
    }
    delivery = signed(payload)

    with (
        gunicorn(workers=1, settings_module=SETTINGS, env=rq_env(redis_url)) as base,
        worker(redis_url, "rq1") as first,
    ):
        assert post(base, delivery) == (200, {"status": "queued", "event_id": "evt_rq_killed"})

        # RQ runs each job in a forked "work horse" (its own process group). The handler
        # has written its HandlerRecord (uncommitted) and waits: kill the horse and its
        # worker outright, as a lost machine would.
        wait_for(lambda: log.exists() and log.read_text().strip(), what="the handler starting")
        horse = int(log.read_text().split()[0])
        assert horse != first.pid
        os.kill(horse, signal.SIGKILL)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

        wait_for(lambda: open_transactions() == 0, what="PostgreSQL ending the session")
        event = Event.objects.get()
        assert (event.status, event.attempts) == ("pending", 0)
        assert not HandlerRecord.objects.exists()
        # RQ has not finished the job: it stays "started", with no worker left to end it.
        assert [_status(job) for job in jobs(redis)] == ["started"]

        recover_the_killed_event(
            event,
            release=release,
            log=log,
            reprocess=lambda *args: run_to_completion(redis_url, "klarefi_reprocess", *args),
            redeliver=lambda: post(base, delivery),
        )
    assert HandlerRecord.objects.count() == 2
    assert len(log.read_text().splitlines()) == 2


# -- Enqueued only after the row commits (in this process, on real Redis) ------------------


def rq_task_mode(redis_url: str) -> override_settings:
    framework = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    return override_settings(
        KLAREFI_PROCESSING="task",
        KLAREFI_TASK_BACKEND="webhooks",
        KLAREFI_TASK_QUEUE=QUEUE,
        RQ_QUEUES={QUEUE: {"URL": redis_url}},
        TASKS={
            "default": {"BACKEND": f"{framework}.backends.immediate.ImmediateBackend"},
            "webhooks": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [QUEUE]},
        },
    )


def test_the_rq_job_is_enqueued_only_after_the_row_commits(redis, redis_url):
    payload = {"id": "evt_rq_commit", "event": "case.completed", "case_id": "case_1"}
    queue = Queue(QUEUE, connection=redis)

    with rq_task_mode(redis_url):
        with transaction.atomic():
            result = receive_event(
                payload,
                raw_body=encode_event(payload),
                signed_at=1,
                enqueue=tasks.enqueue_processing,
            )
            assert result.outcome == Outcome.QUEUED
            assert queue.count == 0  # nothing in Redis while the row is uncommitted

        [job] = jobs(redis)
        event = Event.objects.get()
        assert list(job.args) == [str(event.pk)]
        assert (event.status, event.attempts) == ("pending", 0)

    # A real worker, started now, finds the committed row and processes it.
    with worker(redis_url, "rq1"):
        wait_for(lambda: Event.objects.filter(status="processed").exists(), what="the job running")
        wait_for(lambda: finished(redis)[0][0] == "finished", what="the job finishing")
    assert finished(redis) == [("finished", "processed", "rq1")]
    assert sorted(HandlerRecord.objects.values_list("handler", flat=True)) == [
        "event_received",
        "typed",
    ]


def test_nothing_reaches_redis_when_the_transaction_rolls_back(redis, redis_url):
    payload = {"id": "evt_rq_rollback", "event": "case.completed"}

    class Abandoned(Exception):
        pass

    def receive_then_abandon() -> None:
        with transaction.atomic():
            receive_event(
                payload,
                raw_body=encode_event(payload),
                signed_at=1,
                enqueue=tasks.enqueue_processing,
            )
            raise Abandoned

    with rq_task_mode(redis_url), pytest.raises(Abandoned):
        receive_then_abandon()

    assert jobs(redis) == []
    assert redis.keys("rq:job:*") == []
    assert not Event.objects.exists()
