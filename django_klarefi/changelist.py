"""The Event admin's changelist: filters with static choices, a date drill-down from MIN/MAX.

Django's changelist counts the whole table and runs a ``SELECT DISTINCT`` for each filter
and for the date drill-down. These classes do neither, so the list stays fast on a table of
millions of rows. They never load payloads or tracebacks.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.models import Event

__all__ = ["EventChangeList", "EventTypeFilter", "StatusFilter"]

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

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.is_filtered:
            # The full count is off (show_full_result_count = False), so Django's search
            # bar would say "N results (Show all)" on the unfiltered list too. Nothing
            # narrows it: the whole list is the result, and the bar says nothing.
            self.full_result_count = self.result_count

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
