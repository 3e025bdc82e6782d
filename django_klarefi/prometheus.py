"""django-klarefi's Prometheus metrics (``pip install "django-klarefi[prometheus]"``).

The only module that imports ``prometheus_client``. The receiver never imports it directly:
:mod:`django_klarefi.metrics` does, on the first hook called with metrics on. The metrics
live in ``prometheus_client``'s default registry, so an exporter the project already has
(``django-prometheus``, its own ``/metrics`` view) shows them; :func:`metrics_view` is one
ready to route.

Under gunicorn (or any server with several worker processes) set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the server starts: each worker
then writes its values there, and :func:`metrics_view` adds them all up, whichever worker
answers the scrape. See docs/operating.md.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["DELIVERIES", "FAILURES", "PROCESSING", "REJECTIONS", "metrics_view"]

DELIVERIES = Counter(
    "klarefi_webhook_deliveries",
    "Verified Klarefi deliveries, by the answer's JSON status.",
    ["endpoint", "outcome"],
)
REJECTIONS = Counter(
    "klarefi_webhook_rejections",
    "Klarefi deliveries answered 4xx or 503 before anything was stored, by the JSON error.",
    ["endpoint", "reason"],
)
PROCESSING = Histogram(
    "klarefi_event_processing_seconds",
    "Time the handlers of one attempt took (the attempt's transaction, COMMIT included).",
    ["endpoint", "event_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FAILURES = Counter(
    "klarefi_events_failed",
    "Failed attempts at Klarefi events' handlers.",
    ["endpoint", "event_type"],
)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every metric of this process, or of all workers in multiprocess mode, in
    Prometheus's text format. Route it where only your Prometheus reaches it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
