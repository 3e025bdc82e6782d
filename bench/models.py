"""The baseline's table: the least a verify-and-insert view can store."""

from __future__ import annotations

from django.db import models


class BaselineEvent(models.Model):
    # Unique, like any receiver that dedupes: a redelivery fails the INSERT.
    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()

    objects: models.Manager[BaselineEvent] = models.Manager()

    class Meta:
        app_label = "bench"

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
