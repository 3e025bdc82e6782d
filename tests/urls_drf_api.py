"""The receiver and django-klarefi's DRF URLs, nothing of the host's own: the URLconf the
OpenAPI schema test generates from."""

from __future__ import annotations

from django.urls import include, path

from django_klarefi.contrib.rest_framework import KlarefiWebhookAPIView
from tests.urls import urlpatterns as base_urlpatterns

urlpatterns = [
    *base_urlpatterns,
    path("api/klarefi/", include("django_klarefi.contrib.rest_framework.urls")),
    path("api/klarefi/webhook/", KlarefiWebhookAPIView.as_view(), name="api-webhook"),
]
