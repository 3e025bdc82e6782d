"""The stored record of every Klarefi event: one row per event, however often delivered."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models.fields.json import KeyTransform
from django.utils.translation import gettext_lazy as _

from django_klarefi.endpoint_model import Endpoint
from django_klarefi.endpoint_settings import DEFAULT_ENDPOINT, ENDPOINT_NAME_MAX_LENGTH
from django_klarefi.event_types import TEST_EVENT_KEY

__all__ = [
    "EVENT_ID_MAX_LENGTH",
    "EVENT_TYPE_MAX_LENGTH",
    "REFERENCE_MAX_LENGTH",
    "TEST_EVENT_KEY",
    "Endpoint",
    "Event",
    "PayloadField",
]

EVENT_ID_MAX_LENGTH = 255
EVENT_TYPE_MAX_LENGTH = 100
REFERENCE_MAX_LENGTH = 255


# The one key of a stored payload that holds another payload as JSON text (below).
_ENCODED_KEY = "$django_klarefi_json"


class PayloadField(models.JSONField):
    """A JSONField that stores any JSON value losslessly, U+0000 included.

    PostgreSQL's ``jsonb`` cannot hold U+0000 (a JSON ``\\u0000``), which occurs in text
    extracted from documents. A value that contains it is stored as
    ``{"$django_klarefi_json": "<the value as JSON text>"}`` (JSON text escapes U+0000, so
    the column can hold it), and read back as the original value. So is a value that is
    itself a one-key object with that key, so that decoding is always exact. The same
    encoding is used on every database. Key lookups and key transforms in queries do not
    see into an encoded value (and are not decoded).

    Otherwise the value is stored as it is; on PostgreSQL ``jsonb`` then normalises it as
    it always does: object keys are reordered, and numbers are kept as decimals, so a
    float written with an exponent whose value is integral reads back as an equal int
    (``1e20`` as ``100000000000000000000``) and ``-0.0`` as ``0``.
    """

    def get_prep_value(self, value: Any) -> Any:
        if _needs_encoding(value):
            value = {_ENCODED_KEY: json.dumps(value)}
        return super().get_prep_value(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        if isinstance(expression, KeyTransform):
            return value  # a part of the stored value, never an encoded whole
        if isinstance(value, dict) and len(value) == 1:
            encoded = value.get(_ENCODED_KEY)
            if isinstance(encoded, str):
                return json.loads(encoded)
        return value


def _needs_encoding(value: Any) -> bool:
    if isinstance(value, dict) and len(value) == 1 and _ENCODED_KEY in value:
        return True
    return _contains_nul(value)


def _contains_nul(value: Any) -> bool:
    """Whether U+0000 occurs in any string or key of ``value``: what json.dumps would
    escape as \\u0000, found without serializing the value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(
            (isinstance(key, str) and "\x00" in key) or _contains_nul(item)
            for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    return False


class Event(models.Model):
    """A Klarefi webhook event, stored on its first verified delivery."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROCESSED = "processed", _("Processed")
        FAILED = "failed", _("Failed")

    event_id = models.CharField(
        _("event id"),
        max_length=EVENT_ID_MAX_LENGTH,
        help_text=_("The payload's id, or sha256:<digest of the body> when it has none."),
    )
    # The endpoint (Klarefi account) that received it; an event id is unique per endpoint.
    # db_default: rows inserted by code that does not know the column yet (a deploy's old
    # processes, while the migration runs) belong to "default".
    endpoint = models.CharField(
        _("endpoint"),
        max_length=ENDPOINT_NAME_MAX_LENGTH,
        default=DEFAULT_ENDPOINT,
        db_default=DEFAULT_ENDPOINT,
        help_text=_("The name of the endpoint that received it."),
    )
    event_type = models.CharField(_("event type"), max_length=EVENT_TYPE_MAX_LENGTH)
    case_id = models.CharField(_("case id"), max_length=REFERENCE_MAX_LENGTH, blank=True)
    session_id = models.CharField(_("session id"), max_length=REFERENCE_MAX_LENGTH, blank=True)
    payload = PayloadField(_("payload"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    error = models.TextField(
        _("error"), blank=True, help_text=_("The last failure's exception and traceback.")
    )
    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, help_text=_("How many times the handlers ran.")
    )
    deliveries = models.PositiveIntegerField(
        _("deliveries"), default=0, help_text=_("How many signed deliveries were recorded.")
    )
    signed_at = models.DateTimeField(
        _("signed at"), null=True, blank=True, help_text=_("The signature header's t.")
    )
    is_test = models.BooleanField(
        _("test event"),
        default=False,
        help_text=_(
            'Built by django-klarefi as a test event: its payload has "django_klarefi_test": true.'
        ),
    )
    received_at = models.DateTimeField(_("received at"))
    last_received_at = models.DateTimeField(_("last received at"))
    processed_at = models.DateTimeField(
        _("processed at"),
        null=True,
        blank=True,
        help_text=_("When the attempt that succeeded started."),
    )
    payload_erased_at = models.DateTimeField(
        _("payload erased at"),
        null=True,
        blank=True,
        help_text=_(
            "When the payload's data and the error text were erased; the payload keeps "
            "its envelope (id, type, references). See django_klarefi.personal_data."
        ),
    )

    class Meta:
        verbose_name = _("Klarefi event")
        verbose_name_plural = _("Klarefi events")
        permissions = [
            ("reprocess_event", _("Can reprocess Klarefi events")),
            ("send_test_event", _("Can send signed test events to the receiver")),
            ("view_event_payload", _("Can view Klarefi event payloads and errors")),
            ("erase_event", _("Can erase the personal data of Klarefi events")),
        ]
        indexes = [
            # The admin's default ordering and its date drill-down.
            models.Index(fields=["-received_at", "-id"], name="klarefi_event_received"),
            # The status and type filters, each with the default ordering; the status one
            # also serves "pending/failed older than ..." for reprocess and prune.
            models.Index(fields=["status", "-received_at"], name="klarefi_event_status"),
            models.Index(fields=["event_type", "-received_at"], name="klarefi_event_type"),
            # Exact-match search.
            models.Index(fields=["case_id"], name="klarefi_event_case"),
            models.Index(fields=["session_id"], name="klarefi_event_session"),
            # The endpoint filter (admin, API, --endpoint), with the default ordering.
            models.Index(fields=["endpoint", "-received_at"], name="klarefi_event_endpoint"),
        ]
        constraints = [
            # One row per event per endpoint. The event id comes first, so that the index
            # also serves a lookup by event id alone (search, --event-id).
            models.UniqueConstraint(
                fields=["event_id", "endpoint"], name="klarefi_event_unique_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
