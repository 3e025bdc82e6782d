"""The admin's erase action: erase the personal data of the selected events, after a
confirmation page, through :func:`django_klarefi.personal_data.erase_events`.

Behind the ``django_klarefi.erase_event`` permission. The erasure is recorded with the
user (a ``LogEntry`` and a log line), by the selection's primary keys or the changelist's
filters, never by the data erased.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin, action, helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_klarefi.models import Event
from django_klarefi.personal_data import ErasureStopped, erase_events

__all__ = ["erase_selected_events"]

#: At most this many primary keys name a selection in the erasure's record.
NAMED_KEYS = 20


@action(description=_("Erase the personal data of selected events"), permissions=["erase"])
def erase_selected_events(
    modeladmin: ModelAdmin[Event], request: HttpRequest, queryset: QuerySet[Event]
) -> TemplateResponse | None:
    """First a confirmation page; once confirmed (``post=yes``), erase and report."""
    if request.POST.get("post") != "yes":
        return _confirmation(modeladmin, request, queryset)
    description = _selection_description(request)
    try:
        erased = erase_events(queryset, actor=request.user, filter_description=description)
    except ErasureStopped as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return None
    modeladmin.message_user(
        request,
        ngettext(
            "Erased the payload data of %(count)d event. It keeps its envelope and is never "
            "run again.",
            "Erased the payload data of %(count)d events. They keep their envelope and are "
            "never run again.",
            erased,
        )
        % {"count": erased},
        messages.SUCCESS,
    )
    return None


def _confirmation(
    modeladmin: ModelAdmin[Event], request: HttpRequest, queryset: QuerySet[Event]
) -> TemplateResponse:
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Erase personal data?"),
        "subtitle": None,
        "opts": opts,
        "count": queryset.count(),
        "already": queryset.filter(payload_erased_at__isnull=False).count(),
        "action": request.POST.get("action", "erase_selected_events"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "index": request.POST.get("index", "0"),
    }
    return TemplateResponse(request, "admin/django_klarefi/event/erase_confirmation.html", context)


def _selection_description(request: HttpRequest) -> str:
    """Which events, for the record: the changelist's filters when all matching events
    were chosen, otherwise the selected primary keys."""
    if request.POST.get("select_across") == "1":
        filters = request.GET.urlencode()
        return f"the admin list's filter ({filters})" if filters else "every event (admin)"
    selected: list[Any] = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    named = ", ".join(selected[:NAMED_KEYS])
    more = f" and {len(selected) - NAMED_KEYS} more" if len(selected) > NAMED_KEYS else ""
    return f"the admin selection (pk {named}{more})"
