from __future__ import annotations

from django.urls import include, path

from loans.api import CaseStatusCallback

urlpatterns = [
    path("webhooks/klarefi/", include("django_klarefi.urls")),
    path("api/case-status/", CaseStatusCallback.as_view()),
]
