"""tests.urls_drf, the Prometheus metrics view, and a webhook_rejected receiver that writes
each rejection to the database (so a test sees the signal sent in a server's workers)."""

from __future__ import annotations

from django.dispatch import receiver
from django.urls import path

from django_klarefi.prometheus import metrics_view
from django_klarefi.signals import webhook_rejected
from tests.testapp.models import HandlerRecord
from tests.urls_drf import urlpatterns as drf_urlpatterns

urlpatterns = [*drf_urlpatterns, path("metrics", metrics_view)]


@receiver(webhook_rejected, dispatch_uid="tests.urls_metrics")
def record_rejection(sender, *, reason, status, client, **kwargs):
    HandlerRecord.objects.create(event_id=f"{status} {reason}", handler=f"rejected {client}")
