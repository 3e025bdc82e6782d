"""The receiver, the baseline and the admin, for ``bench/big_tables.py``."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from bench.urls import urlpatterns as receiver_patterns

urlpatterns = [*receiver_patterns, path("admin/", admin.site.urls)]
