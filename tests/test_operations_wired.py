"""The operations hooks, fired by the real paths: event_failed from every path that runs
receivers, webhook_rejected from the receiver, the delivery and processing metrics, and
the structured fields of the core's log lines. Both databases."""

from __future__ import annotations

import logging

import django
import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from django_klarefi import tasks
from django_klarefi.models import Event
from django_klarefi.processing import Outcome, process_event
from django_klarefi.signals import event_failed, webhook_rejected
from django_klarefi.testing import encode_event, post_event

pytestmark = pytest.mark.django_db(transaction=True)

FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
TASK_MODE = {
    "KLAREFI_PROCESSING": "task",
    "TASKS": {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}},
}


def case_completed(event_id="evt_ops"):
    return {"id": event_id, "event": "case.completed", "case_id": "case_1"}


@pytest.fixture
def failed_signals():
    calls = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    event_failed.connect(receiver, dispatch_uid="tests-ops-failed")
    yield calls
    event_failed.disconnect(dispatch_uid="tests-ops-failed")


def deliver_failing(path, client, handlers):
    handlers.fail_with = RuntimeError("receiver broke")
    if path == "sync":
        return post_event(client, case_completed()).json()["status"]
    if path == "task":
        with override_settings(**TASK_MODE):
            post_event(client, case_completed())
            [queued] = tasks.task_backends["default"].results
            return queued.task.call(*queued.args)
    handlers.fail_with = None
    post_event(client, case_completed())
    handlers.fail_with = RuntimeError("receiver broke")
    return str(process_event(Event.objects.get(), force=True).outcome)


@pytest.mark.parametrize("path", ["sync", "task", "reprocess"])
def test_event_failed_is_sent_once_the_failure_is_recorded(client, handlers, failed_signals, path):
    assert deliver_failing(path, client, handlers) == "failed"
    [sent] = failed_signals
    assert isinstance(sent["exception"], RuntimeError)
    assert sent["event"].status == "failed"  # the row as recorded, after the rollback
    assert "receiver broke" in sent["event"].error
    # Task mode answered 200 "queued": Klarefi will not deliver it again.
    assert sent["retries_exhausted"] is (path == "task")


def test_a_raising_event_failed_receiver_changes_nothing(client, handlers):
    def broken(sender, **kwargs):
        raise ValueError("the pager is down")

    event_failed.connect(broken, dispatch_uid="tests-ops-broken")
    try:
        handlers.fail_with = RuntimeError("receiver broke")
        response = post_event(client, case_completed())
    finally:
        event_failed.disconnect(dispatch_uid="tests-ops-broken")
    assert (response.status_code, response.json()["status"]) == (500, "failed")
    assert Event.objects.get().status == "failed"


def test_event_failed_is_not_sent_for_a_success(client, handlers, failed_signals):
    assert post_event(client, case_completed()).json()["status"] == "processed"
    assert failed_signals == []


def test_the_receiver_sends_webhook_rejected_and_a_raising_receiver_changes_nothing(client):
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)
        raise ValueError("a receiver of the project's that fails")

    webhook_rejected.connect(receiver, dispatch_uid="tests-ops-rejected")
    try:
        response = client.post(
            "/webhooks/klarefi",
            encode_event(case_completed()),
            content_type="application/json",
            headers={"X-Klarefi-Signature": "t=1,v1=" + "0" * 64},
        )
    finally:
        webhook_rejected.disconnect(dispatch_uid="tests-ops-rejected")
    assert response.status_code == 401
    [kwargs] = sent
    assert (kwargs["reason"], kwargs["status"], kwargs["endpoint"], kwargs["client"]) == (
        "timestamp_outside_tolerance",
        401,
        "default",
        "127.0.0.1",
    )
    assert not Event.objects.exists()


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_deliveries_and_processing_time_are_counted_by_the_receiver(client, handlers):
    delivered = {"endpoint": "default", "outcome": "processed"}
    processed = {"endpoint": "default", "event_type": "case.completed"}
    before = (
        value("klarefi_webhook_deliveries_total", **delivered),
        value("klarefi_event_processing_seconds_count", **processed),
    )
    post_event(client, case_completed())
    assert value("klarefi_webhook_deliveries_total", **delivered) == before[0] + 1
    assert value("klarefi_event_processing_seconds_count", **processed) == before[1] + 1


def test_a_failed_attempts_log_line_carries_its_facts_as_fields(client, handlers, caplog):
    handlers.fail_with = RuntimeError("receiver broke")
    with caplog.at_level(logging.ERROR, logger="django_klarefi"):
        post_event(client, case_completed())
    [record] = [r for r in caplog.records if r.name == "django_klarefi"]
    assert (
        record.klarefi_event_id,
        record.klarefi_event_type,
        record.klarefi_endpoint,
        record.klarefi_attempt,
        record.klarefi_outcome,
    ) == ("evt_ops", "case.completed", "default", 1, Outcome.FAILED)
