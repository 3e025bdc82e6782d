from __future__ import annotations

from django.db import models


class HandlerRecord(models.Model):
    """A side effect written by test handlers: counts how often a handler ran, per event."""

    event_id = models.CharField(max_length=255)
    handler = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)


class HandlerRecordNote(models.Model):
    """Points at a HandlerRecord. Django creates the foreign key DEFERRABLE INITIALLY
    DEFERRED on PostgreSQL and SQLite, so a note pointing at no record fails at COMMIT."""

    record = models.ForeignKey(HandlerRecord, on_delete=models.CASCADE)
