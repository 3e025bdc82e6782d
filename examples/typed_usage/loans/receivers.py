"""Tell the underwriters when Klarefi has finished a case."""

from __future__ import annotations

from typing import Any

from django.core.mail import send_mail
from django.dispatch import receiver

from django_klarefi.models import Event
from django_klarefi.signals import case_completed


@receiver(case_completed)
def notify_underwriters(sender: type[Event], event: Event, **kwargs: Any) -> None:
    outcome: str = event.payload["data"].get("outcome", "unknown")
    send_mail(
        subject=f"Case {event.case_id}: {outcome}",
        message=f"Klarefi completed case {event.case_id} ({event.event_id}).",
        from_email="klarefi@example.com",
        recipient_list=["underwriting@example.com"],
    )
