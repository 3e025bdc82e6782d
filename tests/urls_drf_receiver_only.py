"""Only the DRF receiver routed, under an API prefix: check E011 must not fire."""

from __future__ import annotations

from django.urls import include, path

from django_klarefi.contrib.rest_framework import KlarefiWebhookAPIView

urlpatterns = [path("api/", include([path("klarefi/", KlarefiWebhookAPIView.as_view())]))]
