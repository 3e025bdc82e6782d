"""Serializers of the events API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from django_klarefi.models import REFERENCE_MAX_LENGTH, Event
from django_klarefi.personal_data import ERASED_OUTCOME, error_class
from django_klarefi.processing import Outcome

__all__ = [
    "EraseQuerySerializer",
    "EraseResultSerializer",
    "EventSerializer",
    "ReprocessQuerySerializer",
    "ReprocessResultSerializer",
]

#: The permission that shows payloads and tracebacks, as ``user.has_perm`` takes it.
VIEW_PAYLOAD_PERMISSION = "django_klarefi.view_event_payload"


class EventSerializer(serializers.ModelSerializer[Event]):
    """A stored event: its payload, as received, and the processing bookkeeping.

    Read-only. Nothing here is secret: the signing secret is never stored. The payload
    and the error hold personal data: only a request user with the
    ``django_klarefi.view_event_payload`` permission gets them (superusers have it).
    Anyone else gets ``payload: null`` and the error's exception class alone; the
    envelope (ids, type, references, status, counts, timestamps) is always there. Without
    a request in the context, the payload is left out too.
    """

    class Meta:
        model = Event
        fields = [
            "id",
            "event_id",
            "endpoint",
            "event_type",
            "case_id",
            "session_id",
            "status",
            "error",
            "attempts",
            "deliveries",
            "is_test",
            "signed_at",
            "received_at",
            "last_received_at",
            "processed_at",
            "payload_erased_at",
            "payload",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Event) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not self._shows_payload():
            data["payload"] = None
            data["error"] = error_class(instance.error)
        return data

    def _shows_payload(self) -> bool:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return bool(user is not None and user.has_perm(VIEW_PAYLOAD_PERMISSION))


class ReprocessQuerySerializer(serializers.Serializer[None]):
    """The query parameters of ``POST events/<pk>/reprocess/``."""

    force = serializers.BooleanField(
        default=False, help_text="Run the handlers of an event that was processed already."
    )


#: The outcomes a reprocess request can answer with (a deleted event is a 404 instead;
#: an erased one is refused with ``erased``, a 409).
REPROCESS_OUTCOMES = [
    Outcome.PROCESSED,
    Outcome.FAILED,
    Outcome.ALREADY_PROCESSED,
    Outcome.IN_FLIGHT,
    ERASED_OUTCOME,
]


class ReprocessResultSerializer(serializers.Serializer[None]):
    """The answer of ``POST events/<pk>/reprocess/``: the outcome and the event after it."""

    outcome = serializers.ChoiceField(choices=[str(outcome) for outcome in REPROCESS_OUTCOMES])
    detail = serializers.CharField(required=False, help_text="Why an erased event is refused.")
    event = EventSerializer()


class EraseQuerySerializer(serializers.Serializer[None]):
    """The query parameters of ``POST events/erase/``: at least one; together they narrow."""

    case_id = serializers.CharField(
        required=False, max_length=REFERENCE_MAX_LENGTH, help_text="Events of this case."
    )
    session_id = serializers.CharField(
        required=False, max_length=REFERENCE_MAX_LENGTH, help_text="Events of this session."
    )
    event_id = serializers.CharField(required=False, help_text="This event id.")
    endpoint = serializers.CharField(
        required=False, help_text="Only events received by this endpoint (with one of the above)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not set(attrs) - {"endpoint"}:
            raise serializers.ValidationError(
                "Choose events: case_id, session_id or event_id (never all events at once)."
            )
        return attrs


class EraseResultSerializer(serializers.Serializer[None]):
    """The answer of ``POST events/erase/``: how many events were erased, and the filter."""

    erased = serializers.IntegerField(help_text="Events whose payload data was erased now.")
    filter = serializers.CharField(help_text="The filter, as the erasure's record names it.")
