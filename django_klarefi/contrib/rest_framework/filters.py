"""Query-parameter filters of the events API, validated (400 naming the parameter)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request
from rest_framework.views import APIView

from django_klarefi.endpoint_settings import ENDPOINT_NAME_MAX_LENGTH
from django_klarefi.models import EVENT_TYPE_MAX_LENGTH, REFERENCE_MAX_LENGTH, Event

__all__ = ["EventFilterBackend", "EventFilterSerializer"]


class EventFilterSerializer(serializers.Serializer[None]):
    """The filters, one field per query parameter; every one optional."""

    endpoint = serializers.CharField(
        required=False,
        max_length=ENDPOINT_NAME_MAX_LENGTH,
        help_text="The name of the endpoint that received it (default: every endpoint).",
    )
    event_type = serializers.CharField(
        required=False, max_length=EVENT_TYPE_MAX_LENGTH, help_text="Exact event type."
    )
    status = serializers.ChoiceField(
        choices=Event.Status.choices, required=False, help_text="Processing status."
    )
    case_id = serializers.CharField(
        required=False, max_length=REFERENCE_MAX_LENGTH, help_text="Exact case id."
    )
    session_id = serializers.CharField(
        required=False, max_length=REFERENCE_MAX_LENGTH, help_text="Exact session id."
    )
    is_test = serializers.BooleanField(
        required=False, help_text="Only test events (true) or only real ones (false)."
    )
    received_after = serializers.DateTimeField(
        required=False, help_text="Received at or after this ISO 8601 moment."
    )
    received_before = serializers.DateTimeField(
        required=False, help_text="Received before this ISO 8601 moment."
    )


# Query parameter -> ORM lookup, for the parameters that are not exact matches.
_LOOKUPS = {"received_after": "received_at__gte", "received_before": "received_at__lt"}

# OpenAPI schema per serializer field class, for the parameters in the schema.
_SCHEMAS: dict[type[serializers.Field[Any, Any, Any, Any]], dict[str, str]] = {
    serializers.BooleanField: {"type": "boolean"},
    serializers.DateTimeField: {"type": "string", "format": "date-time"},
}


class EventFilterBackend(BaseFilterBackend):
    """Filter events by the query parameters of :attr:`filter_serializer_class`.

    Every value is validated first: an invalid one is a 400 whose body names the
    parameter (``{"received_after": ["Datetime has wrong format. ..."]}``). Subclass and
    extend the serializer to add filters; each field name is the model field it matches,
    unless :attr:`lookups` maps it to another lookup.
    """

    filter_serializer_class: type[serializers.Serializer[None]] = EventFilterSerializer
    lookups: dict[str, str] = _LOOKUPS

    def filter_queryset(
        self, request: Request, queryset: QuerySet[Any], view: APIView
    ) -> QuerySet[Any]:
        if getattr(view, "action", "list") != "list":
            return queryset  # the detail and reprocess routes address one event by its pk
        filters = self.filter_serializer_class(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        lookups = {
            self.lookups.get(name, name): value for name, value in filters.validated_data.items()
        }
        return queryset.filter(**lookups)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        """The OpenAPI parameters, for drf-spectacular (without importing it)."""
        return [
            _parameter(name, field) for name, field in self.filter_serializer_class().fields.items()
        ]


def _parameter(name: str, field: serializers.Field[Any, Any, Any, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_SCHEMAS.get(type(field), {"type": "string"}))
    if isinstance(field, serializers.ChoiceField):
        schema["enum"] = list(field.choices)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": str(field.help_text or ""),
        "schema": schema,
    }
