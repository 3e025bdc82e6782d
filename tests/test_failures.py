"""report_failure: the event_failed signal, sent robustly, and the failures metric."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from django_klarefi.failures import report_failure, report_recorded_failure
from django_klarefi.models import Event
from django_klarefi.signals import event_failed

pytestmark = pytest.mark.django_db


def failed_event(*, deliveries=1, age=timedelta(0), event_type="case.completed"):
    received = timezone.now() - age
    return Event.objects.create(
        event_id=f"evt_failed_{deliveries}_{int(age.total_seconds())}",
        event_type=event_type,
        payload={"event": event_type},
        status="failed",
        error="Traceback ...",
        attempts=deliveries,
        deliveries=deliveries,
        received_at=received,
        last_received_at=received,
    )


@pytest.fixture
def sent():
    calls = []

    def receiver(sender, **kwargs):
        calls.append((sender, kwargs))

    event_failed.connect(receiver, dispatch_uid="test-failures")
    yield calls
    event_failed.disconnect(dispatch_uid="test-failures")


def test_event_failed_carries_the_event_the_exception_and_whether_retries_are_over(sent):
    event = failed_event()
    error = ValueError("handler broke")
    assert report_failure(event, error) is False  # Klarefi retries in a minute
    [(sender, kwargs)] = sent
    assert sender is Event
    assert kwargs["event"] is event
    assert kwargs["exception"] is error
    assert kwargs["retries_exhausted"] is False


@pytest.mark.parametrize(
    ("deliveries", "age"), [(5, timedelta(minutes=3)), (2, timedelta(hours=3))]
)
def test_retries_are_over_after_five_deliveries_or_past_the_schedule(sent, deliveries, age):
    assert report_failure(failed_event(deliveries=deliveries, age=age), ValueError()) is True
    assert sent[0][1]["retries_exhausted"] is True


def test_in_task_mode_retries_are_over_at_once(sent, settings):
    settings.KLAREFI_PROCESSING = "task"
    assert report_failure(failed_event(), ValueError()) is True


def test_the_caller_may_decide(sent):
    assert report_failure(failed_event(), ValueError(), retries_exhausted=True) is True
    assert sent[0][1]["retries_exhausted"] is True


def test_a_raising_receiver_is_logged_with_the_events_facts_and_changes_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="django_klarefi")
    event = failed_event()

    def broken(sender, event, **kwargs):
        event.status = "processed"
        event.save()  # even a receiver that writes: report_failure reads nothing back
        raise RuntimeError("sentry is down")

    event_failed.connect(broken)
    try:
        assert report_failure(event, ValueError("boom")) is False
    finally:
        event_failed.disconnect(broken)
    [record] = [r for r in caplog.records if r.name == "django_klarefi.signals"]
    assert record.levelno == logging.ERROR
    assert "event_failed" in record.getMessage()
    assert record.klarefi_event_id == event.event_id
    assert record.klarefi_event_type == "case.completed"
    assert record.klarefi_endpoint == "default"
    assert record.klarefi_attempt == 1


def test_each_failure_is_counted_by_endpoint_and_documented_type():
    name = "klarefi_events_failed_total"
    documented = {"endpoint": "default", "event_type": "case.completed"}
    other = {"endpoint": "default", "event_type": "other"}
    before = [REGISTRY.get_sample_value(name, labels) or 0 for labels in (documented, other)]
    report_failure(failed_event(), ValueError())
    report_failure(failed_event(event_type="x.custom_type_123", deliveries=2), ValueError())
    after = [REGISTRY.get_sample_value(name, labels) or 0 for labels in (documented, other)]
    assert after == [before[0] + 1, before[1] + 1]


def test_the_processing_path_reports_by_event_id_once_the_row_is_recorded(sent):
    event = failed_event(deliveries=5, age=timedelta(minutes=40))
    error = KeyError("x")
    assert report_recorded_failure("default", event.event_id, error) is True
    [(_, kwargs)] = sent
    assert kwargs["event"].pk == event.pk
    assert kwargs["event"].status == "failed"
    assert kwargs["exception"] is error
    assert report_recorded_failure("default", "evt_gone", error) is None
    assert len(sent) == 1
