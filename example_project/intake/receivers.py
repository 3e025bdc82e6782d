"""The example app's reactions to Klarefi events: connect receivers, log what arrived."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from django_klarefi.models import Event
from django_klarefi.signals import case_completed, document_processed, event_received

logger = logging.getLogger("intake")


@receiver(case_completed)
def on_case_completed(sender: type[Event], event: Event, **kwargs: Any) -> None:
    logger.info("Case %s completed; results: %s", event.case_id, event.payload.get("data"))


@receiver(document_processed)
def on_document_processed(sender: type[Event], event: Event, **kwargs: Any) -> None:
    logger.info("Document processed in case %s", event.case_id)


@receiver(event_received)
def on_any_event(sender: type[Event], event: Event, **kwargs: Any) -> None:
    logger.info("Received %s (%s), stored as event #%s", event.event_type, event.event_id, event.pk)
