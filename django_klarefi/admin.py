"""The read-only admin for Klarefi events: browse, reprocess, and send signed test events.

Built to stay fast on a table of millions of rows: the status and type filters have static
lookups (no ``SELECT DISTINCT``), the date drill-down reads only ``MIN``/``MAX`` over the
``received_at`` index, search is an exact match on indexed columns, facets and the full
result count are off, and the paginator uses PostgreSQL's row estimate for the unfiltered
list. The changelist never loads payloads or tracebacks.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.models import REFERENCE_MAX_LENGTH, Event
from django_klarefi.paginator import EstimatedCountPaginator
from django_klarefi.processing import Outcome, events_in_pk_order, process_event
from django_klarefi.samples import sample_event
from django_klarefi.sending import SendingNotConfigured, send_test_event

__all__ = ["EventAdmin", "EventTypeFilter", "SendTestEventForm", "StatusFilter"]

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Event]
else:  # ModelAdmin is generic in django-stubs only.
    _ModelAdmin = admin.ModelAdmin

#: Payloads and tracebacks longer than this many characters are cut on the change page.
DISPLAY_LIMIT = 100_000

OTHER_TYPES = "__other__"


class StatusFilter(admin.SimpleListFilter):
    """Status from the model's choices: no query to build the list."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(Event.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in Event.Status.values:
            return queryset.filter(status=value)
        return queryset


class EventTypeFilter(admin.SimpleListFilter):
    """The documented event types (``EVENT_TYPES``), plus "other": no query to build it."""

    title = _("event type")
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            *((event_type, event_type) for event_type in EVENT_TYPES),
            (OTHER_TYPES, _("Other (undocumented)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == OTHER_TYPES:
            return queryset.exclude(event_type__in=list(EVENT_TYPES))
        if value in EVENT_TYPES:
            return queryset.filter(event_type=value)
        return queryset


class EventChangeList(ChangeList):
    """The changelist, without payloads, and with a date drill-down that never DISTINCTs."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer("payload", "error")

    @property
    def is_filtered(self) -> bool:
        """Whether a search, a filter or a date narrows the list (the search bar's count)."""
        dates = f"{self.date_hierarchy}__" if self.date_hierarchy else None
        return bool(
            self.query
            or self.has_active_filters
            or (dates and any(name.startswith(dates) for name in self.params))
        )

    def date_drilldown(self) -> dict[str, Any]:
        """The context of ``admin/date_hierarchy.html``, from MIN/MAX of ``received_at``.

        Django's own drill-down lists the years, months or days that have rows with a
        ``SELECT DISTINCT`` over every matching row. Here the choices are the whole range
        between the first and the last matching row, which two index lookups give.
        """
        field = self.date_hierarchy
        year_field, month_field, day_field = (
            f"{field}__{part}" for part in ("year", "month", "day")
        )
        year, month, day = (
            _param(self.params, name) for name in (year_field, month_field, day_field)
        )

        def link(filters: dict[str, Any]) -> str:
            return str(self.get_query_string(filters, [f"{field}__"]))

        bounds = self.queryset.aggregate(first=Min(field), last=Max(field))
        first, last = (_local(bounds["first"]), _local(bounds["last"]))
        if not (year or month or day) and first and last and first.year == last.year:
            year = str(first.year)
            if first.month == last.month:
                month = str(first.month)

        if year and month and day:
            chosen = datetime.date(int(year), int(month), int(day))
            return {
                "show": True,
                "back": {
                    "link": link({year_field: year, month_field: month}),
                    "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
            }
        if year and month:
            days = range(first.day, last.day + 1) if first and last else range(0)
            return {
                "show": True,
                "back": {"link": link({year_field: year}), "title": year},
                "choices": [
                    {
                        "link": link({year_field: year, month_field: month, day_field: str(d)}),
                        "title": capfirst(
                            formats.date_format(
                                datetime.date(int(year), int(month), d), "MONTH_DAY_FORMAT"
                            )
                        ),
                    }
                    for d in days
                ],
            }
        if year:
            months = range(first.month, last.month + 1) if first and last else range(0)
            return {
                "show": True,
                "back": {"link": link({}), "title": _("All dates")},
                "choices": [
                    {
                        "link": link({year_field: year, month_field: str(m)}),
                        "title": capfirst(
                            formats.date_format(datetime.date(int(year), m, 1), "YEAR_MONTH_FORMAT")
                        ),
                    }
                    for m in months
                ],
            }
        years = range(first.year, last.year + 1) if first and last else range(0)
        return {
            "show": bool(years),
            "back": None,
            "choices": [{"link": link({year_field: str(y)}), "title": str(y)} for y in years],
        }


def _param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list):  # the query string's values, as lists on some versions
        value = value[-1] if value else None
    return None if value is None else str(value)


def _local(moment: datetime.datetime | None) -> datetime.datetime | None:
    if moment is not None and timezone.is_aware(moment):
        return timezone.localtime(moment)
    return moment


class SendTestEventForm(forms.Form):
    """The "Send test event" page: an event type and optional references."""

    event_type = forms.ChoiceField(
        label=_("Event type"),
        choices=[(name, f"{name} — {description}") for name, description in EVENT_TYPES.items()],
    )
    case_id = forms.CharField(
        label=_("Case id"),
        max_length=REFERENCE_MAX_LENGTH,
        required=False,
        help_text=_("Leave empty for a generated one."),
    )
    session_id = forms.CharField(
        label=_("Session id"),
        max_length=REFERENCE_MAX_LENGTH,
        required=False,
        help_text=_("Leave empty for a generated one."),
    )


@admin.register(Event)
class EventAdmin(_ModelAdmin):
    """Read-only: events come from Klarefi. Delete follows the normal delete permission."""

    list_display = (
        "event_type",
        "event_id",
        "case_id",
        "session_id",
        "status_badge",
        "deliveries",
        "attempts",
        "received_at",
    )
    list_display_links = ("event_type", "event_id")
    list_filter = (StatusFilter, EventTypeFilter)
    date_hierarchy = "received_at"
    search_fields = ("event_id", "case_id", "session_id")
    search_help_text = _("Exact event id, case id or session id.")
    # The index klarefi_event_received, (-received_at, -id), serves this ordering.
    ordering = ("-received_at", "-id")
    # Sorting by another column would sort the whole table: only received_at has an index.
    sortable_by = ("received_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["reprocess_events"]
    change_list_template = "admin/django_klarefi/event/change_list.html"
    change_form_template = "admin/django_klarefi/event/change_form.html"

    fieldsets = [
        (None, {"fields": ["event_id", "event_type", "status_badge", "case_id", "session_id"]}),
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
                ]
            },
        ),
        (_("Payload"), {"fields": ["pretty_payload"]}),
    ]
    # Everything shown is read-only: events come from Klarefi.
    readonly_fields = [*flatten_fieldsets(fieldsets), "last_error"]

    def get_fieldsets(self, request: HttpRequest, obj: Event | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.error:
            fieldsets.append((_("Last error"), {"fields": ["last_error"]}))
        return fieldsets

    # Read-only: no add, no change. View (or change) permission shows the pages.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        """The custom permission ``django_klarefi.reprocess_event``."""
        opts = self.opts
        return request.user.has_perm(
            f"{opts.app_label}.{get_permission_codename('reprocess', opts)}"
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EventChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """Exact, case-sensitive matches, so that each column's plain b-tree index serves it."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(event_id=term) | Q(case_id=term) | Q(session_id=term)), False

    # Columns and read-only fields.

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

    @admin.display(description=_("error and traceback"))
    def last_error(self, event: Event) -> SafeString:
        return _preformatted(event.error, "klarefi-error")

    # The reprocess action.

    @admin.action(description=_("Reprocess selected events"), permissions=["reprocess"])
    def reprocess_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        """Run each selected event's handlers again through ``processing.process_event``."""
        outcomes: Counter[Outcome] = Counter()
        for event in events_in_pk_order(queryset.only("pk", "event_id")):
            outcomes[process_event(event).outcome] += 1
        succeeded, failed = outcomes[Outcome.PROCESSED], outcomes[Outcome.FAILED]
        parts = [
            ngettext(
                "%(succeeded)d event succeeded",
                "%(succeeded)d events succeeded",
                succeeded,
            )
            % {"succeeded": succeeded},
            ngettext("%(failed)d failed", "%(failed)d failed", failed) % {"failed": failed},
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
        if outcomes[Outcome.IN_FLIGHT]:
            parts.append(
                ngettext(
                    "%(count)d is being processed elsewhere; try it again later",
                    "%(count)d are being processed elsewhere; try them again later",
                    outcomes[Outcome.IN_FLIGHT],
                )
                % {"count": outcomes[Outcome.IN_FLIGHT]}
            )
        level = messages.ERROR if failed else messages.SUCCESS
        if not failed and outcomes[Outcome.IN_FLIGHT]:
            level = messages.WARNING
        self.message_user(request, _("Reprocessed: ") + ", ".join(parts) + ".", level)

    # The "Send test event" page.

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        return [
            path(
                "send-test-event/",
                self.admin_site.admin_view(self.send_test_event_view),
                name=f"{opts.app_label}_{opts.model_name}_send_test_event",
            ),
            *super().get_urls(),
        ]

    def send_test_event_view(self, request: HttpRequest) -> HttpResponse:
        """Sign a sample event and deliver it in-process to the receiver, then link to it.

        Staff only (``admin_view``), with the view permission on events. The page never
        shows the signing secret.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = SendTestEventForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            payload = sample_event(
                form.cleaned_data["event_type"],
                case_id=form.cleaned_data["case_id"] or None,
                session_id=form.cleaned_data["session_id"] or None,
            )
            try:
                delivery = send_test_event(payload, in_process=True)
            except SendingNotConfigured as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self._report_delivery(request, delivery)
                return HttpResponseRedirect(request.get_full_path())
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": _("Send test event"),
            "subtitle": None,
            "opts": opts,
            "form": form,
            "has_view_permission": True,
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        return TemplateResponse(request, "admin/django_klarefi/event/send_test_event.html", context)

    def _report_delivery(self, request: HttpRequest, delivery: Any) -> None:
        event = Event.objects.filter(event_id=delivery.event_id).only("pk", "status").first()
        opts = self.opts
        if event is None:
            self.message_user(
                request,
                format_html(
                    "{} {} was not stored: HTTP {}. {}",
                    delivery.event_type,
                    delivery.event_id,
                    delivery.status if delivery.status is not None else "—",
                    delivery.error or delivery.body,
                ),
                messages.ERROR,
            )
            return
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[event.pk])
        self.message_user(
            request,
            format_html(
                'Sent {} <a href="{}">{}</a>: HTTP {} in {} ms; stored as {}.',
                delivery.event_type,
                url,
                delivery.event_id,
                delivery.status,
                round(delivery.milliseconds),
                event.get_status_display().lower(),
            ),
            messages.SUCCESS if delivery.ok else messages.WARNING,
        )


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
