"""The stored record of every Klarefi event: one row per event, however often delivered."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

EVENT_ID_MAX_LENGTH = 255
EVENT_TYPE_MAX_LENGTH = 100
REFERENCE_MAX_LENGTH = 255


class Event(models.Model):
    """A Klarefi webhook event, stored on its first verified delivery."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROCESSED = "processed", _("Processed")
        FAILED = "failed", _("Failed")

    event_id = models.CharField(
        _("event id"),
        max_length=EVENT_ID_MAX_LENGTH,
        unique=True,
        help_text=_("The payload's id, or sha256:<digest of the body> when it has none."),
    )
    event_type = models.CharField(_("event type"), max_length=EVENT_TYPE_MAX_LENGTH)
    case_id = models.CharField(_("case id"), max_length=REFERENCE_MAX_LENGTH, blank=True)
    session_id = models.CharField(_("session id"), max_length=REFERENCE_MAX_LENGTH, blank=True)
    payload = models.JSONField(_("payload"))
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
    received_at = models.DateTimeField(_("received at"))
    last_received_at = models.DateTimeField(_("last received at"))
    processed_at = models.DateTimeField(
        _("processed at"),
        null=True,
        blank=True,
        help_text=_("When the attempt that succeeded started."),
    )

    class Meta:
        verbose_name = _("Klarefi event")
        verbose_name_plural = _("Klarefi events")
        permissions = [("reprocess_event", _("Can reprocess Klarefi events"))]
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
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
