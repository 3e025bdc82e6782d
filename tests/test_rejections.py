"""report_rejection: the rate-limited log record, the webhook_rejected signal, the metric."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from django_klarefi import rejections
from django_klarefi.rejections import CAPACITY, OVERFLOW_CLIENT, RejectionLog, report_rejection
from django_klarefi.signals import webhook_rejected


class Sender:
    """The view or class that answered."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(rejections, "REJECTION_LOG", RejectionLog(clock=clock))
    return clock


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.DEBUG, logger="django_klarefi")

    def rejection_records():
        return [r for r in caplog.records if r.name == "django_klarefi.rejections"]

    return rejection_records


def reject(client="203.0.113.7", reason="no_matching_signature", status=401, endpoint="default"):
    report_rejection(
        client=client,
        status=status,
        reason=reason,
        detail="No signature matches.",
        sender=Sender,
        endpoint=endpoint,
    )


def test_repeated_rejections_are_logged_once_a_minute_with_a_count(clock, records):
    reject()
    [first] = records()
    assert first.levelno == logging.WARNING
    assert first.getMessage() == (
        "Rejected Klarefi webhook from 203.0.113.7: no_matching_signature (No signature matches.)"
    )
    assert first.klarefi_reason == "no_matching_signature"
    assert first.klarefi_endpoint == "default"
    assert first.klarefi_client == "203.0.113.7"

    for _ in range(41):  # within the minute: counted, not logged
        clock.now += 1
        reject()
    assert len(records()) == 1

    clock.now = 1000.0 + 60  # a minute after the record: the next one is logged, with the count
    reject()
    second = records()[-1]
    assert len(records()) == 2
    assert second.klarefi_summarised == 41
    assert "41 more like it since the last record were not logged" in second.getMessage()


def test_each_client_and_reason_has_its_own_minute(clock, records):
    reject(client="203.0.113.7")
    reject(client="203.0.113.8")
    reject(client="203.0.113.7", reason="timestamp_outside_tolerance")
    reject(client="203.0.113.7")
    assert [(r.klarefi_client, r.klarefi_reason) for r in records()] == [
        ("203.0.113.7", "no_matching_signature"),
        ("203.0.113.8", "no_matching_signature"),
        ("203.0.113.7", "timestamp_outside_tolerance"),
    ]


def test_a_flood_that_stops_is_summarised_by_the_next_record_of_any_kind(clock, records):
    reject(client="203.0.113.7")
    for _ in range(5):
        reject(client="203.0.113.7")
    clock.now += 61
    reject(client="198.51.100.1", reason="malformed_signature_header")
    summary, record = records()[-2:]
    assert summary.getMessage() == (
        "Rejected 5 more Klarefi webhooks from 203.0.113.7: no_matching_signature "
        "(not logged one by one)."
    )
    assert (summary.klarefi_summarised, summary.klarefi_client) == (5, "203.0.113.7")
    assert record.klarefi_client == "198.51.100.1"


def test_memory_stays_bounded_under_many_clients(clock, records):
    log = RejectionLog(clock=clock, capacity=3)
    decisions = [log.admit(f"10.0.0.{n}", "no_matching_signature") for n in range(10)]
    assert [d.log for d in decisions] == [True, True, True, True] + [False] * 6
    assert decisions[3].client == OVERFLOW_CLIENT
    assert len(log._entries) == 4  # three clients, and the overflow entry for the reason
    assert CAPACITY >= 1000


def test_the_signal_carries_the_facts_and_never_the_body(clock):
    sent = []

    def receiver(sender, **kwargs):
        sent.append((sender, kwargs))

    webhook_rejected.connect(receiver)
    try:
        reject(status=413, reason="body_too_large", endpoint=None)
    finally:
        webhook_rejected.disconnect(receiver)
    [(sender, kwargs)] = sent
    assert sender is Sender
    kwargs.pop("signal")
    assert kwargs == {
        "client": "203.0.113.7",
        "status": 413,
        "reason": "body_too_large",
        "endpoint": None,
        "detail": "No signature matches.",
    }


def test_the_signal_is_sent_for_every_rejection_even_when_the_log_summarises(clock):
    sent = []
    webhook_rejected.connect(
        lambda sender, **kwargs: sent.append(kwargs), weak=False, dispatch_uid="test-every"
    )
    try:
        for _ in range(3):
            reject()
    finally:
        webhook_rejected.disconnect(dispatch_uid="test-every")
    assert len(sent) == 3


def test_a_raising_receiver_is_logged_and_the_others_still_run(clock, caplog):
    caplog.set_level(logging.DEBUG, logger="django_klarefi")
    calls = []

    def broken(sender, **kwargs):
        raise RuntimeError("pager down")

    def working(sender, **kwargs):
        calls.append(kwargs["reason"])

    webhook_rejected.connect(broken)
    webhook_rejected.connect(working)
    try:
        reject()  # returns: nothing propagates
    finally:
        webhook_rejected.disconnect(broken)
        webhook_rejected.disconnect(working)
    assert calls == ["no_matching_signature"]
    [record] = [r for r in caplog.records if r.name == "django_klarefi.signals"]
    assert record.levelno == logging.ERROR
    assert "webhook_rejected" in record.getMessage()
    assert record.exc_info[1].args == ("pager down",)
    assert record.klarefi_reason == "no_matching_signature"


def test_each_rejection_is_counted_by_endpoint_and_reason(clock):
    labels = {"endpoint": "default", "reason": "no_matching_signature"}
    name = "klarefi_webhook_rejections_total"
    before = REGISTRY.get_sample_value(name, labels) or 0
    for _ in range(3):
        reject()
    assert REGISTRY.get_sample_value(name, labels) == before + 3


def test_an_unknown_endpoint_and_an_odd_reason_do_not_make_new_label_values(clock):
    name = "klarefi_webhook_rejections_total"
    labels = {"endpoint": "unknown", "reason": "other"}
    before = REGISTRY.get_sample_value(name, labels) or 0
    reject(endpoint=None, reason="Evt_123 <script>")
    assert REGISTRY.get_sample_value(name, labels) == before + 1
