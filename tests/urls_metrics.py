"""tests.urls_drf, the Prometheus metrics view, and receivers that write to the database (so a
test sees the signals sent in a server's workers): each rejection (webhook_rejected), each
recorded failure (event_failed), and an event_received receiver that fails an event whose
payload says ``"fail": true``."""

from __future__ import annotations

from django.dispatch import receiver
from django.urls import path

from django_klarefi.prometheus import metrics_view
from django_klarefi.signals import event_failed, event_received, webhook_rejected
from tests.testapp.models import HandlerRecord
from tests.urls_drf import urlpatterns as drf_urlpatterns

urlpatterns = [*drf_urlpatterns, path("metrics", metrics_view)]


@receiver(webhook_rejected, dispatch_uid="tests.urls_metrics")
def record_rejection(sender, *, reason, status, client, **kwargs):
    HandlerRecord.objects.create(event_id=f"{status} {reason}", handler=f"rejected {client}")


@receiver(event_received, dispatch_uid="tests.urls_metrics.fail")
def fail_when_asked(sender, event, **kwargs):
    if event.payload.get("fail") is True:
        raise RuntimeError("failed on purpose")


@receiver(event_failed, dispatch_uid="tests.urls_metrics.failed")
def record_failure(sender, *, event, exception, retries_exhausted, **kwargs):
    HandlerRecord.objects.create(
        event_id=event.event_id, handler=f"failed {type(exception).__name__} {retries_exhausted}"
    )
