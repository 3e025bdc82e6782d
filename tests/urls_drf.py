"""A host project with django-klarefi's DRF pieces routed, and views of its own."""

from __future__ import annotations

from django.urls import path

from tests.drfapp import views
from tests.urls_drf_api import urlpatterns as api_urlpatterns

urlpatterns = [
    *api_urlpatterns,
    path("api/signed/", views.SignedView.as_view(), name="signed"),
    path("api/signed-raw-body/", views.SignedRawBodyView.as_view(), name="signed-raw-body"),
    path("api/signed-or-session/", views.SignedOrSessionView.as_view(), name="signed-or-session"),
    path("api/session-first/", views.SessionFirstView.as_view(), name="session-first"),
    path("api/data-read-first/", views.DataReadFirstView.as_view(), name="data-read-first"),
    path(
        "api/streamed-data-read-first/",
        views.StreamedDataReadFirstView.as_view(),
        name="streamed-data-read-first",
    ),
    path(
        "api/staff-events/",
        views.StaffOnlyEventViewSet.as_view({"get": "list"}),
        name="staff-events",
    ),
]
