"""``path("api/klarefi/", include("django_klarefi.contrib.rest_framework.urls"))``.

Serves ``events/``, ``events/<pk>/`` and ``events/<pk>/reprocess/``, named
``django_klarefi_api:event-list``, ``event-detail`` and ``event-reprocess``.
"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from django_klarefi.contrib.rest_framework.viewsets import EventViewSet

app_name = "django_klarefi_api"

router = SimpleRouter()
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
