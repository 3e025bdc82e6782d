"""The include line of earlier versions, with a trailing slash (check W003)."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("webhooks/klarefi/", include("django_klarefi.urls")),
]
