"""Task mode (``KLAREFI_PROCESSING = "task"``) in one process: SQLite and PostgreSQL.

The framework's own ImmediateBackend and DummyBackend are the engines here; the real queue
with separate worker processes is in test_task_workers.py.
"""

from __future__ import annotations

import importlib
import sys

import django
import pytest
from django.db import transaction
from django.test import override_settings
from django.utils.module_loading import import_string

import django_klarefi
from django_klarefi import checks, tasks, views
from django_klarefi.checks import check_task_processing
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event, receive_event
from django_klarefi.testing import encode_event, post_event
from tests.testapp.models import HandlerRecord

FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"
UNAVAILABLE = "tests.taskapp.backends.UnavailableBackend"

Task = import_string(f"{FRAMEWORK}.base.Task")

task_mode = override_settings(KLAREFI_PROCESSING="task")
immediate = override_settings(TASKS={"default": {"BACKEND": IMMEDIATE}})
dummy = override_settings(TASKS={"default": {"BACKEND": DUMMY}})


def case_completed(event_id="evt_task_1", **extra):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1", **extra}


def records(event_id):
    return sorted(HandlerRecord.objects.filter(event_id=event_id).values_list("handler", flat=True))


def queued(alias="default"):
    """The tasks a DummyBackend holds: what was enqueued, not run."""
    return tasks.task_backends[alias].results


def run_queued(alias="default"):
    """Run every queued task, as a worker would; their return values."""
    return [result.task.call(*result.args, **result.kwargs) for result in queued(alias)]


# -- Importing and resolving the task ------------------------------------------------------


def test_import_reads_no_tasks_setting_and_creates_no_backend(monkeypatch):
    # A TASKS whose only backend cannot even be imported: an import that created a backend
    # (as a module-level @task decorator would) fails.
    monkeypatch.delitem(sys.modules, "django_klarefi.tasks")
    monkeypatch.delattr(django_klarefi, "tasks")
    with override_settings(TASKS={"default": {"BACKEND": "tests.nowhere.Backend"}}):
        module = importlib.import_module("django_klarefi.tasks")
        assert "process_event_task" not in vars(module)
        with pytest.raises(tasks.InvalidTaskBackend):
            module.process_event_task  # noqa: B018 (the lookup is what creates the Task)


@override_settings(
    TASKS={"default": {"BACKEND": IMMEDIATE}, "hooks": {"BACKEND": DUMMY, "QUEUES": ["k"]}},
    KLAREFI_TASK_BACKEND="hooks",
    KLAREFI_TASK_QUEUE="k",
)
def test_workers_resolve_the_task_by_its_path_on_the_configured_backend_and_queue():
    # django-tasks-db's worker does exactly this with the stored task path.
    resolved = import_string("django_klarefi.tasks.process_event_task")
    assert isinstance(resolved, Task)
    assert resolved.module_path == "django_klarefi.tasks.process_event_task"
    assert (resolved.backend, resolved.queue_name) == ("hooks", "k")


# -- Through the view, on the ImmediateBackend ---------------------------------------------


@task_mode
@immediate
@pytest.mark.django_db(transaction=True)
def test_immediate_backend_processes_after_commit_and_answers_queued(client, handlers):
    response = post_event(client, case_completed())

    assert response.status_code == 200
    assert response.json() == {"status": "queued", "event_id": "evt_task_1"}
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 1)
    assert records("evt_task_1") == ["event_received", "typed"]


@task_mode
@immediate
@pytest.mark.django_db(transaction=True)
def test_handler_failure_is_recorded_on_the_row_though_the_backend_swallows_it(client, handlers):
    handlers.fail_with = RuntimeError("handler broke")

    response = post_event(client, case_completed())

    # The ImmediateBackend keeps the exception to itself: the answer is the enqueue's.
    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("failed", 1)
    assert "RuntimeError: handler broke" in event.error
    assert "Traceback" in event.error
    assert records("evt_task_1") == []  # the handler's writes rolled back

    handlers.fail_with = None
    assert process_event(event).outcome == Outcome.PROCESSED
    assert records("evt_task_1") == ["event_received", "typed"]


# -- Enqueued after commit, and only then (DummyBackend) ------------------------------------


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_view_stores_pending_and_enqueues_the_primary_key_once(client, handlers):
    response = post_event(client, case_completed())

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("pending", 0)
    assert handlers.calls == []
    [result] = queued()
    assert result.args == [str(event.pk)]
    assert result.task.module_path == "django_klarefi.tasks.process_event_task"

    assert run_queued() == ["processed"]
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)
    assert records("evt_task_1") == ["event_received", "typed"]


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_enqueue_waits_for_the_outermost_commit():
    body = encode_event(case_completed())
    with transaction.atomic():
        result = receive_event(
            case_completed(), raw_body=body, signed_at=1, enqueue=tasks.enqueue_processing
        )
        assert result.outcome == Outcome.QUEUED
        assert queued() == []  # not yet: the row is not committed
    [task_result] = queued()
    assert task_result.args == [str(Event.objects.get().pk)]


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_nothing_is_enqueued_when_the_transaction_rolls_back():
    body = encode_event(case_completed())

    class Abandoned(Exception):
        pass

    def receive_then_abandon():
        with transaction.atomic():
            receive_event(
                case_completed(), raw_body=body, signed_at=1, enqueue=tasks.enqueue_processing
            )
            raise Abandoned

    with pytest.raises(Abandoned):
        receive_then_abandon()
    assert queued() == []
    assert not Event.objects.exists()


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_redelivery_of_a_pending_event_enqueues_again_and_duplicates_are_harmless(client, handlers):
    assert post_event(client, case_completed()).json()["status"] == "queued"
    assert post_event(client, case_completed()).json()["status"] == "queued"
    assert len(queued()) == 2

    # Both tasks run: the first processes, the second finds it processed and does nothing.
    assert run_queued() == ["processed", "already_processed"]
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 2)
    assert records("evt_task_1") == ["event_received", "typed"]

    # A redelivery of a processed event enqueues nothing.
    response = post_event(client, case_completed())
    assert response.json()["status"] == "already_processed"
    assert len(queued()) == 2


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_task_for_a_deleted_event_does_nothing(client, handlers):
    post_event(client, case_completed())
    Event.objects.all().delete()

    assert run_queued() == [tasks.MISSING]
    assert handlers.calls == []


@task_mode
@dummy
@pytest.mark.django_db(transaction=True)
def test_task_for_a_failed_event_retries_it(client, handlers):
    post_event(client, case_completed())
    post_event(client, case_completed())  # a redelivery: a second task
    handlers.fail_with = RuntimeError("first try fails")
    [first, second] = queued()

    assert first.task.call(*first.args) == "failed"
    handlers.fail_with = None
    assert second.task.call(*second.args) == "processed"
    event = Event.objects.get()
    assert (event.status, event.attempts, event.error) == ("processed", 2, "")
    assert records("evt_task_1") == ["event_received", "typed"]


# -- Backend and queue chosen at enqueue time ----------------------------------------------


@task_mode
@override_settings(
    TASKS={
        "default": {"BACKEND": DUMMY},
        "hooks": {"BACKEND": DUMMY, "QUEUES": ["default", "klarefi"]},
    }
)
@pytest.mark.django_db(transaction=True)
def test_backend_and_queue_settings_are_read_at_each_enqueue(client):
    with override_settings(KLAREFI_TASK_BACKEND="hooks", KLAREFI_TASK_QUEUE="klarefi"):
        post_event(client, case_completed("evt_a"))
    post_event(client, case_completed("evt_b"))

    [on_hooks] = queued("hooks")
    [on_default] = queued("default")
    assert (on_hooks.task.backend, on_hooks.task.queue_name) == ("hooks", "klarefi")
    assert on_hooks.args == [str(Event.objects.get(event_id="evt_a").pk)]
    assert (on_default.task.backend, on_default.task.queue_name) == ("default", "default")
    assert on_default.args == [str(Event.objects.get(event_id="evt_b").pk)]


# -- An enqueue that fails: 503, pending, and the redelivery recovers ------------------------


@task_mode
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"TASKS": {"default": {"BACKEND": UNAVAILABLE}}}, id="queue-down"),
        pytest.param(
            {"TASKS": {"default": {"BACKEND": IMMEDIATE}}, "KLAREFI_TASK_QUEUE": "nope"},
            id="unknown-queue",
        ),
    ],
)
def test_failed_enqueue_answers_503_keeps_it_pending_and_redelivery_recovers(
    client, handlers, broken
):
    with override_settings(**broken):
        response = post_event(client, case_completed())

    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json() == {"status": "not_queued", "event_id": "evt_task_1"}
    event = Event.objects.get()
    assert (event.status, event.attempts, event.deliveries) == ("pending", 0, 1)
    assert handlers.calls == []

    # The queue is back: Klarefi's retry is queued, and runs, on the ImmediateBackend.
    with immediate:
        response = post_event(client, case_completed())
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    event.refresh_from_db()
    assert (event.status, event.attempts, event.deliveries) == ("processed", 1, 2)
    assert records("evt_task_1") == ["event_received", "typed"]


# -- System checks: no database (pytest-django blocks it in tests without django_db) -------


def check_ids(**overrides):
    with override_settings(**overrides):
        return [message.id for message in check_task_processing()]


def test_sync_mode_checks_nothing_about_tasks():
    assert check_ids(TASKS={"default": {"BACKEND": "tests.nowhere.Backend"}}) == []


@pytest.fixture
def without_tasks_framework(monkeypatch):
    """``django_klarefi.tasks`` imported afresh while no Tasks framework can be imported,
    and used by the checks and the receiver."""
    monkeypatch.delitem(sys.modules, "django_klarefi.tasks")
    monkeypatch.delattr(django_klarefi, "tasks")
    for name in ("django.tasks", "django_tasks"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError
    module = importlib.import_module("django_klarefi.tasks")
    monkeypatch.setattr(checks, "tasks", module)
    monkeypatch.setattr(views, "tasks", module)
    return module


def test_the_task_module_imports_without_a_tasks_framework(without_tasks_framework):
    assert "django_tasks" in without_tasks_framework.FRAMEWORK_MISSING
    with pytest.raises(AttributeError):
        without_tasks_framework.process_event_task  # noqa: B018


def test_e006_when_no_tasks_framework_can_be_imported(without_tasks_framework):
    with override_settings(KLAREFI_PROCESSING="task"):
        [message] = check_task_processing()
    assert message.id == "django_klarefi.E006"
    assert "django-klarefi[tasks]" in message.hint


@pytest.mark.django_db(transaction=True)
def test_task_mode_without_a_framework_stores_the_event_and_answers_503(
    without_tasks_framework, client, handlers
):
    with override_settings(KLAREFI_PROCESSING="task"):
        response = post_event(client, case_completed())
    assert response.status_code == 503
    assert response.json()["status"] == "not_queued"
    assert Event.objects.get().status == Event.Status.PENDING
    assert handlers.calls == []


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"KLAREFI_TASK_BACKEND": "hooks"}, id="alias-not-in-TASKS"),
        pytest.param({"KLAREFI_TASK_BACKEND": 3}, id="not-a-string"),
        pytest.param({"TASKS": {"hooks": {"BACKEND": DUMMY}}}, id="no-default-alias"),
        pytest.param({"TASKS": {"default": {"BACKEND": "tests.nowhere.B"}}}, id="unimportable"),
    ],
)
def test_e007_when_the_backend_does_not_exist(overrides):
    settings = {"KLAREFI_PROCESSING": "task", "TASKS": {"default": {"BACKEND": DUMMY}}}
    assert check_ids(**{**settings, **overrides}) == ["django_klarefi.E007"]


def test_e007_names_the_configured_backends():
    with override_settings(
        KLAREFI_PROCESSING="task",
        KLAREFI_TASK_BACKEND="hooks",
        TASKS={"default": {"BACKEND": DUMMY}, "other": {"BACKEND": DUMMY}},
    ):
        [message] = check_task_processing()
    assert '"hooks"' in message.msg
    assert '"default", "other"' in message.hint


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"KLAREFI_TASK_QUEUE": "nope"}, id="named-queue-missing"),
        pytest.param(
            {"TASKS": {"default": {"BACKEND": DUMMY, "QUEUES": ["klarefi"]}}},
            id="default-queue-missing",
        ),
        pytest.param({"KLAREFI_TASK_QUEUE": ""}, id="empty-name"),
    ],
)
def test_e008_when_the_queue_does_not_exist(overrides):
    settings = {"KLAREFI_PROCESSING": "task", "TASKS": {"default": {"BACKEND": DUMMY}}}
    assert check_ids(**{**settings, **overrides}) == ["django_klarefi.E008"]


def test_w002_on_the_immediate_backend():
    assert check_ids(KLAREFI_PROCESSING="task", TASKS={"default": {"BACKEND": IMMEDIATE}}) == [
        "django_klarefi.W002"
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"TASKS": {"default": {"BACKEND": DUMMY}}}, id="default"),
        pytest.param(
            {
                "TASKS": {
                    "default": {"BACKEND": IMMEDIATE},
                    "hooks": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["k"]},
                },
                "KLAREFI_TASK_BACKEND": "hooks",
                "KLAREFI_TASK_QUEUE": "k",
            },
            id="named-database-backend",
        ),
        pytest.param(
            {"TASKS": {"default": {"BACKEND": DUMMY, "QUEUES": []}}, "KLAREFI_TASK_QUEUE": "x"},
            id="backend-accepts-any-queue",
        ),
    ],
)
def test_a_real_queue_configured_right_has_no_messages(overrides):
    assert check_ids(KLAREFI_PROCESSING="task", **overrides) == []
