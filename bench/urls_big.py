"""The receiver, the baseline, the admin and the DRF events API, for ``bench/big_tables.py``."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from bench.urls import urlpatterns as receiver_patterns

urlpatterns = [
    *receiver_patterns,
    path("admin/", admin.site.urls),
    path("api/klarefi/", include("django_klarefi.contrib.rest_framework.urls")),
]
