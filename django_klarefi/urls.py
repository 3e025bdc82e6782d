"""Include with ``path("webhooks/klarefi/", include("django_klarefi.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_klarefi import views

app_name = "django_klarefi"

urlpatterns = [
    path("", views.webhook, name="webhook"),
]
