"""The app's view routed directly, without ``include("django_klarefi.urls")``: reachable,
so not check E011, though ``django_klarefi:webhook`` cannot be reversed."""

from __future__ import annotations

from django.urls import path

from django_klarefi import views

urlpatterns = [path("hooks/klarefi", views.webhook)]
