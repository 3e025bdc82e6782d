"""What the admin says about events that need a person: the "Needs attention" filter, and
the sentence on a failed event's page about Klarefi's retries.

Both decide as ``klarefi_status`` does (:mod:`django_klarefi.health`,
:mod:`django_klarefi.redelivery`): failed with Klarefi's retries over, or pending for
longer than ``klarefi_status``'s default ``--max-pending-age`` (10 minutes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_klarefi.health import needs_attention_q
from django_klarefi.models import Event
from django_klarefi.redelivery import ATTEMPTS, redelivery

__all__ = ["NeedsAttentionFilter", "redelivery_sentence"]


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Failed events whose Klarefi retries are over, and pending events older than 10
    minutes: static choices, and the ``(status, received_at)`` index serves the filter."""

    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Needs attention"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(needs_attention_q(timezone.now()))
        return queryset


def redelivery_sentence(event: Event, *, now: datetime | None = None) -> str:
    """Whether Klarefi will deliver the failed ``event`` again, and about when; or that only
    a reprocess here will run it now. An estimate (see :mod:`django_klarefi.redelivery`)."""
    now = timezone.now() if now is None else now
    found = redelivery(event, now=now)
    if found.expected_at is not None:
        minutes = max(round((found.expected_at - now).total_seconds() / 60), 0)
        when = formats.date_format(timezone.localtime(found.expected_at), "DATETIME_FORMAT")
        return gettext(
            "Klarefi will deliver this event again at about %(when)s (in about %(minutes)d "
            "min; its attempt %(attempt)d of %(attempts)d), and that delivery runs it again. "
            "An estimate from the deliveries recorded here."
        ) % {"when": when, "minutes": minutes, "attempt": found.attempt, "attempts": ATTEMPTS}
    reasons = {
        "answered": gettext(
            "its deliveries were answered 200 (queued) before the handlers ran, so Klarefi "
            "does not retry it"
        ),
        "attempts": gettext("all %(attempts)d of Klarefi's attempts have come")
        % {"attempts": ATTEMPTS},
        "schedule": gettext("Klarefi's retry schedule for it is over"),
    }
    return gettext(
        "Klarefi will not deliver this event again: %(reason)s. Only a reprocess here will run "
        "it now."
    ) % {"reason": reasons[found.reason]}
