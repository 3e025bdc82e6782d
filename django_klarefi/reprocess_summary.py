"""The admin's reprocess action: run the selected events, then one message that counts each
outcome and links to the events that failed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_klarefi.models import Event
from django_klarefi.personal_data import ERASED_OUTCOME
from django_klarefi.processing import Outcome, events_in_pk_order, process_event

__all__ = ["FAILED_LINKS", "reprocess_and_summarize"]

#: At most this many failed events are linked one by one in the message.
FAILED_LINKS = 10


def reprocess_and_summarize(
    events: QuerySet[Event], change_url: Callable[[Any], str]
) -> tuple[SafeString, int]:
    """Run each of ``events`` through ``processing.process_event`` (processed ones are left
    alone), and return the message and its level.

    ``change_url(pk)`` gives an event's admin page, for the links to the failed ones.
    """
    outcomes: Counter[str] = Counter()
    failed: list[Event] = []
    for event in events_in_pk_order(events.only("pk", "event_id")):
        outcome = process_event(event).outcome
        outcomes[outcome] += 1
        if outcome == Outcome.FAILED and len(failed) < FAILED_LINKS:
            failed.append(event)
    message = format_html("{}{}", _summary(outcomes), _failed_links(failed, outcomes, change_url))
    if outcomes[Outcome.FAILED]:
        return message, messages.ERROR
    if outcomes[Outcome.IN_FLIGHT]:
        return message, messages.WARNING
    return message, messages.SUCCESS


def _summary(outcomes: Counter[str]) -> str:
    succeeded, failed = outcomes[Outcome.PROCESSED], outcomes[Outcome.FAILED]
    parts = [
        ngettext("%(count)d event succeeded", "%(count)d events succeeded", succeeded)
        % {"count": succeeded},
        ngettext("%(count)d failed", "%(count)d failed", failed) % {"count": failed},
    ]
    if outcomes[Outcome.ALREADY_PROCESSED]:
        parts.append(
            ngettext(
                "%(count)d was already processed and left alone",
                "%(count)d were already processed and left alone",
                outcomes[Outcome.ALREADY_PROCESSED],
            )
            % {"count": outcomes[Outcome.ALREADY_PROCESSED]}
        )
    if outcomes[ERASED_OUTCOME]:
        parts.append(
            ngettext(
                "%(count)d had its payload data erased and is never run again",
                "%(count)d had their payload data erased and are never run again",
                outcomes[ERASED_OUTCOME],
            )
            % {"count": outcomes[ERASED_OUTCOME]}
        )
    if outcomes[Outcome.IN_FLIGHT]:
        parts.append(
            ngettext(
                "%(count)d is being processed elsewhere; try it again later",
                "%(count)d are being processed elsewhere; try them again later",
                outcomes[Outcome.IN_FLIGHT],
            )
            % {"count": outcomes[Outcome.IN_FLIGHT]}
        )
    return _("Reprocessed: ") + ", ".join(parts) + "."


def _failed_links(
    failed: list[Event], outcomes: Counter[str], change_url: Callable[[Any], str]
) -> SafeString:
    if not failed:
        return SafeString("")
    links = format_html_join(
        ", ", '<a href="{}">{}</a>', ((change_url(event.pk), event.event_id) for event in failed)
    )
    more = outcomes[Outcome.FAILED] - len(failed)
    if more:
        return format_html(
            " {} {} {}", _("Failed:"), links, _("and %(count)d more.") % {"count": more}
        )
    return format_html(" {} {}", _("Failed:"), links)
