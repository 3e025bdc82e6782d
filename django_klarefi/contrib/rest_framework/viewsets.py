"""Browse and reprocess stored events through the API."""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponseBase, JsonResponse
from django.utils.module_loading import import_string
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from django_klarefi.conf import conf
from django_klarefi.contrib.rest_framework.filters import EventFilterBackend
from django_klarefi.contrib.rest_framework.pagination import EventCursorPagination
from django_klarefi.contrib.rest_framework.permissions import (
    HasErasePermission,
    HasReprocessPermission,
    HasViewEventPermission,
)
from django_klarefi.contrib.rest_framework.schema import load_schema_extensions
from django_klarefi.contrib.rest_framework.serializers import (
    EraseQuerySerializer,
    EventSerializer,
    ReprocessQuerySerializer,
)
from django_klarefi.models import Event
from django_klarefi.personal_data import ERASED_OUTCOME, ErasureStopped, erase_events
from django_klarefi.processing import Outcome, process_event
from django_klarefi.views import RETRY_AFTER_SECONDS, outside_atomic_requests

__all__ = ["EventViewSet", "SettingPermissionClasses"]

logger = logging.getLogger("django_klarefi")


class SettingPermissionClasses:
    """The ``KLAREFI_API_PERMISSION_CLASSES`` setting, read on every access (so
    ``override_settings`` works), as a view's ``permission_classes``."""

    def __get__(self, instance: object, owner: type | None = None) -> list[type[BasePermission]]:
        return [
            import_string(entry) if isinstance(entry, str) else entry
            for entry in conf.API_PERMISSION_CLASSES
        ]


class EventViewSet(viewsets.ReadOnlyModelViewSet[Event]):
    """``GET events/``, ``GET events/<pk>/``, ``POST events/<pk>/reprocess/`` and
    ``POST events/erase/``.

    Configured like any DRF view, by attributes a subclass can override:
    ``permission_classes`` (default: the ``KLAREFI_API_PERMISSION_CLASSES`` setting, itself
    ``IsAdminUser`` by default), :attr:`read_permission_classes` (required on top of those
    to list and read events: ``django_klarefi.view_event``, as in the admin),
    :attr:`reprocess_permission_classes` (required on top of ``permission_classes`` to
    reprocess), :attr:`erase_permission_classes` (the same, to erase),
    ``pagination_class``, ``filter_backends``, ``serializer_class``.
    Authentication and throttling are your API's defaults.

    When the database is unavailable (down, or locked past SQLite's busy timeout), every
    action answers a JSON 503 with ``Retry-After``, as the receiver does, and logs it.
    """

    queryset = Event.objects.all()
    serializer_class = EventSerializer
    pagination_class = EventCursorPagination
    filter_backends = [EventFilterBackend]
    permission_classes = SettingPermissionClasses()
    #: Required, on top of ``permission_classes``, to list and read events.
    read_permission_classes: list[type[BasePermission]] = [HasViewEventPermission]
    #: Required, on top of ``permission_classes``, by the reprocess action.
    reprocess_permission_classes: list[type[BasePermission]] = [HasReprocessPermission]
    #: Required, on top of ``permission_classes``, by the erase action.
    erase_permission_classes: list[type[BasePermission]] = [HasErasePermission]
    reprocess_query_serializer_class = ReprocessQuerySerializer
    erase_query_serializer_class = EraseQuerySerializer
    #: HTTP status per reprocess outcome (its value); the event is in the body either way.
    reprocess_status: dict[str, int] = {
        Outcome.PROCESSED: status.HTTP_200_OK,
        Outcome.ALREADY_PROCESSED: status.HTTP_200_OK,
        Outcome.FAILED: status.HTTP_200_OK,
        Outcome.IN_FLIGHT: status.HTTP_409_CONFLICT,
        ERASED_OUTCOME: status.HTTP_409_CONFLICT,
    }

    @classmethod
    def as_view(cls, actions: Any = None, **initkwargs: Any) -> Any:
        # The reprocess action runs handlers: never inside ATOMIC_REQUESTS (see the view).
        return outside_atomic_requests(super().as_view(actions, **initkwargs))

    def get_permissions(self) -> list[BasePermission]:
        classes = list(self.permission_classes)
        # By the route, not self.action, which is None for OPTIONS (its metadata would
        # describe the action to a user who may not run it).
        route = self.request.path.rstrip("/")
        if self.action == "reprocess" or route.endswith("/reprocess"):
            classes += self.reprocess_permission_classes
        elif self.action == "erase" or route.endswith("/erase"):
            classes += self.erase_permission_classes
        else:
            classes += self.read_permission_classes
        return [permission() for permission in classes]

    # DRF passes any HttpResponse through; the stubs ask for its own Response.
    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, OperationalError | InterfaceError):
            # JSON whatever the Accept header says: the browsable API's page would need
            # the database too.
            logger.exception(
                "Klarefi events API: %s %s not answered: the database is unavailable.",
                self.request.method,
                self.request.path,
            )
            response = JsonResponse(
                {
                    "error": "database_unavailable",
                    "detail": "The database is unavailable. Try again later.",
                },
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
            response["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        return super().handle_exception(exc)

    @action(detail=True, methods=["post"])
    def reprocess(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Run the event's handlers now, through the one processing path.

        ``?force=true`` runs them for a processed event too. Answers the outcome
        (``processed``, ``failed``, ``already_processed``, or with a 409 ``in_flight`` or
        ``erased``: an erased event is never run again) and the event as it is
        afterwards; 404 when the event is gone.
        """
        query = self.reprocess_query_serializer_class(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        event = self.get_object()
        result = process_event(event, force=query.validated_data["force"])
        current = Event.objects.filter(pk=event.pk).first()
        if result.outcome is Outcome.MISSING or current is None:
            raise NotFound("The event was deleted.")
        body = {"outcome": str(result.outcome), "event": self.get_serializer(current).data}
        if result.outcome == ERASED_OUTCOME:
            body["detail"] = (
                "Not reprocessed: the event's payload data was erased, so it is never run again."
            )
        return Response(body, status=self.reprocess_status.get(result.outcome, status.HTTP_200_OK))

    @action(detail=False, methods=["post"])
    def erase(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Erase the payload data and error text of every event matching ``?case_id=``,
        ``?session_id=`` and ``?event_id=`` (at least one), in any status.

        Each event keeps its row and envelope, and is never run again. Answers how many
        were erased; the erasure is recorded with the user (log line and ``LogEntry``).
        """
        query = self.erase_query_serializer_class(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        chosen = query.validated_data
        description = " and ".join(f"{name}={value}" for name, value in chosen.items())
        try:
            erased = erase_events(
                Event.objects.filter(**chosen), actor=request.user, filter_description=description
            )
        except ErasureStopped as exc:
            return Response(
                {"error": "erasure_stopped", "detail": str(exc), "erased": exc.erased},
                status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            )
        return Response({"erased": erased, "filter": description})


load_schema_extensions()
