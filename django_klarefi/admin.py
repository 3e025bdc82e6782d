"""The read-only admin for Klarefi events: browse, reprocess, and send signed test events.

Built to stay fast on a table of millions of rows (see :mod:`django_klarefi.changelist`):
static filter choices, a date drill-down from ``MIN``/``MAX``, exact search on indexed
columns, no facets and no full count, and the paginator uses PostgreSQL's row estimate for
the unfiltered list. The changelist never loads payloads or tracebacks, and the change page
shows them only to users with ``django_klarefi.view_event_payload`` (the envelope and the
exception's class to everyone else; see :mod:`django_klarefi.admin_erasure`). Its styles are one
static file (``django_klarefi/admin/klarefi.css``), so the pages work under a Content
Security Policy of ``style-src 'self'``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_klarefi.admin_attention import NeedsAttentionFilter, redelivery_sentence
from django_klarefi.admin_erasure import erase_selected_events
from django_klarefi.admin_pages import EventAdminPages, SendTestEventForm
from django_klarefi.changelist import EventChangeList, EventTypeFilter, StatusFilter
from django_klarefi.endpoint_admin import EndpointAdmin, EndpointFilter, several_endpoints
from django_klarefi.models import Event
from django_klarefi.paginator import EstimatedCountPaginator
from django_klarefi.personal_data import error_class
from django_klarefi.reprocess_summary import reprocess_and_summarize

__all__ = ["EndpointAdmin", "EventAdmin", "SendTestEventForm"]

if TYPE_CHECKING:
    from django.contrib.admin.views.main import ChangeList

#: Payloads and tracebacks longer than this many characters are cut on the change page.
DISPLAY_LIMIT = 100_000

#: Ids longer than this are shortened in the list (the whole id is on hover).
SHORT_ID_LENGTH = 20


@admin.register(Event)
class EventAdmin(EventAdminPages):
    """Read-only: events come from Klarefi. Delete follows the normal delete permission."""

    # Type and status first: on a narrow screen they are the columns that stay visible. The
    # event id sits under the type, and the case and session ids share a column, so that
    # the list fits 1366 pixels with the navigation sidebar and the filters open.
    list_display = (
        "type_label",
        "status_badge",
        "references",
        "counts",
        "received",
    )
    list_display_links = ("type_label",)
    list_filter = (NeedsAttentionFilter, StatusFilter, EventTypeFilter, "is_test")
    date_hierarchy = "received_at"
    search_fields = ("event_id", "case_id", "session_id")
    search_help_text = _("Exact event id, case id or session id.")
    # The index klarefi_event_received, (-received_at, -id), serves this ordering.
    ordering = ("-received_at", "-id")
    # Sorting by another column would sort the whole table: only received_at has an index.
    sortable_by = ("received",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["reprocess_events", erase_selected_events]
    change_list_template = "admin/django_klarefi/event/change_list.html"
    change_form_template = "admin/django_klarefi/event/change_form.html"

    fieldsets = [
        (
            None,
            {
                "fields": [
                    "event_id",
                    "event_type",
                    "status_badge",
                    "is_test",
                    "case_id",
                    "session_id",
                ]
            },
        ),
        (
            _("Deliveries and attempts"),
            {
                "fields": [
                    "deliveries",
                    "attempts",
                    "signed_at",
                    "received_at",
                    "last_received_at",
                    "processed_at",
                    "payload_erased_at",
                ]
            },
        ),
        (_("Payload"), {"fields": ["pretty_payload"]}),
    ]
    # Everything shown is read-only: events come from Klarefi.
    readonly_fields = [
        *flatten_fieldsets(fieldsets),
        "last_error",
        "klarefi_retries",
        "endpoint",
        "hidden_payload",
        "error_class",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Event | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        shows_payload = self.has_view_payload_permission(request)
        if not shows_payload:
            # Personal data: the envelope above, and what the payload would be, only.
            fieldsets = [
                (name, {**options, "fields": ["hidden_payload"]})
                if "pretty_payload" in options["fields"]
                else (name, options)
                for name, options in fieldsets
            ]
        if obj is not None and obj.status == Event.Status.FAILED:
            fieldsets.insert(1, (_("Klarefi's retries"), {"fields": ["klarefi_retries"]}))
        if obj is not None and obj.error:
            error = "last_error" if shows_payload else "error_class"
            fieldsets.append((_("Last error"), {"fields": [error]}))
        if obj is not None and (obj.endpoint != "default" or several_endpoints(request)):
            fieldsets.insert(1, (_("Endpoint"), {"fields": ["endpoint"]}))
        return fieldsets

    # Read-only: no add, no change. View (or change) permission shows the pages.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EventChangeList

    # Named endpoints: their column and filter once there is more than one.

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = tuple(super().get_list_display(request))
        if several_endpoints(request):
            return (*columns[:1], "endpoint", *columns[1:])
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = tuple(super().get_list_filter(request))
        return (EndpointFilter, *filters) if several_endpoints(request) else filters

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """Exact, case-sensitive matches, so that each column's plain b-tree index serves it."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(event_id=term) | Q(case_id=term) | Q(session_id=term)), False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        context = {"has_send_test_permission": self.has_send_test_permission(request)}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        context = {"has_reprocess_permission": self.has_reprocess_permission(request)}
        return super().change_view(
            request, object_id, form_url, {**context, **(extra_context or {})}
        )

    # Columns and read-only fields.

    @admin.display(description=_("event"))
    def type_label(self, event: Event) -> SafeString:
        """The type (a test badge beside it), and the shortened event id under it."""
        # <wbr> after each dot: a long type breaks at its dots rather than widening the list.
        words = format_html_join(
            SafeString("<wbr>"), "{}", ((w,) for w in _dotted(event.event_type))
        )
        badge = (
            format_html(
                ' <span class="klarefi-test" title="{}">{}</span>',
                _("A signed test event sent by django-klarefi"),
                _("test"),
            )
            if event.is_test
            else ""
        )
        if event.payload_erased_at is not None:
            badge += format_html(
                ' <span class="klarefi-test klarefi-erased" title="{}">{}</span>',
                _("Its payload data was erased; it is never run again"),
                _("erased"),
            )
        return format_html(
            '<span class="klarefi-type">{}</span>{}<br>{}',
            words,
            badge,
            _shortened(event.event_id, "klarefi-event-id"),
        )

    @admin.display(description=_("case / session"))
    def references(self, event: Event) -> SafeString:
        """The case id over the session id, each shortened when long."""
        return format_html(
            "{}<br>{}", _shortened(event.case_id or "-"), _shortened(event.session_id or "-")
        )

    @admin.display(description=_("attempts / deliveries"))
    def counts(self, event: Event) -> SafeString:
        """How often the handlers ran, over how many signed deliveries arrived."""
        return format_html(
            '<span title="{}">{} / {}</span>',
            _("%(attempts)d attempts, %(deliveries)d deliveries")
            % {"attempts": event.attempts, "deliveries": event.deliveries},
            event.attempts,
            event.deliveries,
        )

    @admin.display(description=_("received"), ordering="received_at")
    def received(self, event: Event) -> SafeString:
        moment = timezone.localtime(event.received_at)
        return format_html(
            '<time datetime="{}" title="{}">{}<br>{}</time>',
            moment.isoformat(),
            formats.date_format(moment, "DATETIME_FORMAT"),
            moment.strftime("%Y-%m-%d"),
            moment.strftime("%H:%M:%S"),
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, event: Event) -> SafeString:
        return format_html(
            '<span class="klarefi-status klarefi-status-{}">{}</span>',
            event.status,
            event.get_status_display(),
        )

    @admin.display(description=_("payload"))
    def pretty_payload(self, event: Event) -> SafeString:
        text = json.dumps(event.payload, indent=2, ensure_ascii=False, sort_keys=False)
        return _preformatted(text, "klarefi-payload")

    @admin.display(description=_("delivered again?"))
    def klarefi_retries(self, event: Event) -> str:
        """For a failed event: whether, and about when, Klarefi delivers it again."""
        return redelivery_sentence(event)

    @admin.display(description=_("error and traceback"))
    def last_error(self, event: Event) -> SafeString:
        return _preformatted(event.error, "klarefi-error")

    @admin.display(description=_("payload"))
    def hidden_payload(self, event: Event) -> str:
        """In place of the payload, for users without ``view_event_payload``."""
        if event.payload_erased_at is not None:
            return str(_("Erased: only the envelope above is kept."))
        return str(
            _(
                "Hidden: it holds personal data. Showing it needs the permission "
                '"Can view Klarefi event payloads and errors".'
            )
        )

    @admin.display(description=_("exception"))
    def error_class(self, event: Event) -> str:
        """The exception's class only, for users without ``view_event_payload``: its
        message and traceback can quote the payload."""
        name = error_class(event.error)
        hidden = _("(message and traceback hidden)")
        return f"{name} {hidden}" if name else str(hidden)

    # Reprocessing: the action (many events) and the change page's button (one).

    @admin.action(description=_("Reprocess selected events"), permissions=["reprocess"])
    def reprocess_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        """Run each selected event's handlers again through ``processing.process_event``."""
        message, level = reprocess_and_summarize(queryset, self._change_url)
        self.message_user(request, message, level)


def _shortened(value: str, css_class: str = "") -> SafeString:
    """``value`` for a list cell, in a ``klarefi-id`` span whose title is the whole value:
    cut in the middle when longer than SHORT_ID_LENGTH."""
    shown = value
    if len(value) > SHORT_ID_LENGTH:
        head = SHORT_ID_LENGTH - 7
        shown = f"{value[:head]}…{value[-6:]}"
    return format_html('<span class="klarefi-id {}" title="{}">{}</span>', css_class, value, shown)


def _dotted(event_type: str) -> list[str]:
    parts = event_type.split(".")
    return [f"{part}." for part in parts[:-1]] + parts[-1:]


def _preformatted(text: str, css_class: str) -> SafeString:
    """``text`` in an escaped ``<pre>``, cut at DISPLAY_LIMIT characters with a note."""
    if len(text) <= DISPLAY_LIMIT:
        return format_html('<pre class="klarefi-pre {}">{}</pre>', css_class, text)
    return format_html(
        '<p class="klarefi-truncated">{}</p><pre class="klarefi-pre {}">{}\n…</pre>',
        _("Truncated: showing the first {shown} of {total} characters.").format(
            shown=formats.number_format(DISPLAY_LIMIT, force_grouping=True),
            total=formats.number_format(len(text), force_grouping=True),
        ),
        css_class,
        text[:DISPLAY_LIMIT],
    )
