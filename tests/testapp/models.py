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


class EventNote(models.Model):
    """A project's row pointing at a stored event: inserting one takes a KEY SHARE lock on
    the event's row (PostgreSQL), which processing's row locks must not conflict with."""

    event = models.ForeignKey("django_klarefi.Event", on_delete=models.CASCADE)
