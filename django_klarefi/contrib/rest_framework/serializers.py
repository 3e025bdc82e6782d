"""Serializers of the events API."""

from __future__ import annotations

from rest_framework import serializers

from django_klarefi.models import Event
from django_klarefi.processing import Outcome

__all__ = ["EventSerializer", "ReprocessQuerySerializer", "ReprocessResultSerializer"]


class EventSerializer(serializers.ModelSerializer[Event]):
    """A stored event: its payload, as received, and the processing bookkeeping.

    Read-only. Nothing here is secret: the signing secret is never stored.
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
            "payload",
        ]
        read_only_fields = fields


class ReprocessQuerySerializer(serializers.Serializer[None]):
    """The query parameters of ``POST events/<pk>/reprocess/``."""

    force = serializers.BooleanField(
        default=False, help_text="Run the handlers of an event that was processed already."
    )


#: The outcomes a reprocess request can answer with (a deleted event is a 404 instead).
REPROCESS_OUTCOMES = [
    Outcome.PROCESSED,
    Outcome.FAILED,
    Outcome.ALREADY_PROCESSED,
    Outcome.IN_FLIGHT,
]


class ReprocessResultSerializer(serializers.Serializer[None]):
    """The answer of ``POST events/<pk>/reprocess/``: the outcome and the event after it."""

    outcome = serializers.ChoiceField(choices=[str(outcome) for outcome in REPROCESS_OUTCOMES])
    event = EventSerializer()
