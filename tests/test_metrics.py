"""The metrics hooks: bounded labels, and off with KLAREFI_METRICS = False."""

from __future__ import annotations

from prometheus_client import REGISTRY

from django_klarefi import metrics


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_deliveries_are_counted_by_endpoint_and_outcome():
    before = value("klarefi_webhook_deliveries_total", endpoint="default", outcome="processed")
    metrics.count_delivery("default", "processed")
    after = value("klarefi_webhook_deliveries_total", endpoint="default", outcome="processed")
    assert after == before + 1


def test_processing_time_is_a_histogram_by_endpoint_and_documented_type():
    labels = {"endpoint": "default", "event_type": "case.completed"}
    count = "klarefi_event_processing_seconds_count"
    in_bucket = "klarefi_event_processing_seconds_bucket"
    before = value(count, **labels), value(in_bucket, le="0.05", **labels)
    metrics.observe_processing("default", "case.completed", 0.03)
    metrics.observe_processing("default", "case.completed", 0.2)
    assert value(count, **labels) == before[0] + 2
    assert value(in_bucket, le="0.05", **labels) == before[1] + 1


def test_an_undocumented_type_is_labelled_other():
    labels = {"endpoint": "default", "event_type": "other"}
    before = value("klarefi_event_processing_seconds_count", **labels)
    metrics.observe_processing("default", "evt.anything_a_sender_chose", 0.01)
    assert value("klarefi_event_processing_seconds_count", **labels) == before + 1
    assert (
        value(
            "klarefi_event_processing_seconds_count",
            endpoint="default",
            event_type="evt.anything_a_sender_chose",
        )
        == 0
    )


def test_klarefi_metrics_false_turns_every_hook_off(settings):
    assert metrics.metrics_enabled()
    settings.KLAREFI_METRICS = False
    assert not metrics.metrics_enabled()
    names = [
        ("klarefi_webhook_deliveries_total", {"endpoint": "default", "outcome": "processed"}),
        ("klarefi_webhook_rejections_total", {"endpoint": "default", "reason": "throttled"}),
        ("klarefi_events_failed_total", {"endpoint": "default", "event_type": "case.completed"}),
        (
            "klarefi_event_processing_seconds_count",
            {"endpoint": "default", "event_type": "case.completed"},
        ),
    ]
    before = [value(name, **labels) for name, labels in names]
    metrics.count_delivery("default", "processed")
    metrics.count_rejection("default", "throttled")
    metrics.count_failure("default", "case.completed")
    metrics.observe_processing("default", "case.completed", 0.1)
    assert [value(name, **labels) for name, labels in names] == before


def test_the_metrics_view_shows_them_in_prometheus_text_format(rf):
    from django_klarefi.prometheus import metrics_view

    metrics.count_delivery("default", "queued")
    response = metrics_view(rf.get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b'klarefi_webhook_deliveries_total{endpoint="default",outcome="queued"}' in (
        response.content
    )
