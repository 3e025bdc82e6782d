"""The admin's pages beside Django's own, for Klarefi events: an event's Reprocess button,
and the Send test event page. Both run handlers, so both (and the changelist, where the
reprocess action runs) are outside any request transaction, as the receiver is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_klarefi.endpoint_admin import request_endpoint_names
from django_klarefi.endpoint_settings import DEFAULT_ENDPOINT
from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.models import REFERENCE_MAX_LENGTH, Event
from django_klarefi.personal_data import ERASED_OUTCOME
from django_klarefi.processing import Outcome, process_event
from django_klarefi.samples import sample_event
from django_klarefi.sending import SendingNotConfigured, send_test_event
from django_klarefi.views import outside_atomic_requests

__all__ = ["EventAdminPages", "SendTestEventForm"]

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Event]
else:  # ModelAdmin is generic in django-stubs only.
    _ModelAdmin = admin.ModelAdmin


class SendTestEventForm(forms.Form):
    """The "Send test event" page: an endpoint (when there are several), an event type and
    optional references."""

    endpoint = forms.ChoiceField(
        label=_("Endpoint"),
        help_text=_("Signed with this endpoint's secret, received as delivered to its URL."),
    )
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

    def __init__(self, *args: Any, endpoints: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = endpoints or [DEFAULT_ENDPOINT]
        if len(names) > 1:
            self.fields["endpoint"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]
        else:
            del self.fields["endpoint"]  # one endpoint: nothing to choose

    @property
    def chosen_endpoint(self) -> str:
        """The endpoint to send to (``default`` when there is only one)."""
        return str(self.cleaned_data.get("endpoint") or DEFAULT_ENDPOINT)


class EventAdminPages(_ModelAdmin):
    """The Reprocess button and the Send test event page, with their permissions; the base
    of :class:`django_klarefi.admin.EventAdmin`."""

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        """The custom permission ``django_klarefi.reprocess_event``."""
        return self._has_permission(request, "reprocess")

    def has_send_test_permission(self, request: HttpRequest) -> bool:
        """The custom permission ``django_klarefi.send_test_event``: the send-test page runs
        the real handlers with the production secret."""
        return self._has_permission(request, "send_test")

    def has_view_payload_permission(self, request: HttpRequest) -> bool:
        """The custom permission ``django_klarefi.view_event_payload``: payloads and
        tracebacks hold personal data; without it a page shows the envelope only."""
        return request.user.has_perm(f"{self.opts.app_label}.view_event_payload")

    def has_erase_permission(self, request: HttpRequest) -> bool:
        """The custom permission ``django_klarefi.erase_event`` (the erase action)."""
        return self._has_permission(request, "erase")

    def _has_permission(self, request: HttpRequest, action: str) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")

    def reprocess_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only (with the CSRF token): run this event's handlers again, forced if it is
        processed, through ``processing.process_event``; then show the outcome."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_reprocess_permission(request):
            raise PermissionDenied
        event = get_object_or_404(Event.objects.defer("payload", "error"), pk=object_id)
        result = process_event(event, force=True)
        if result.outcome in (Outcome.PROCESSED, Outcome.FAILED):
            # The attempt's own count, as committed (the row in hand may be stale).
            event = Event.objects.defer("payload", "error").get(pk=event.pk)
        level = {
            Outcome.PROCESSED: messages.SUCCESS,
            Outcome.FAILED: messages.ERROR,
        }.get(result.outcome, messages.WARNING)
        self.message_user(request, _reprocess_message(event, result.outcome), level)
        if result.outcome == Outcome.MISSING:
            return HttpResponseRedirect(self._changelist_url())
        return HttpResponseRedirect(self._change_url(event.pk))

    # The "Send test event" page.

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        name = f"{opts.app_label}_{opts.model_name}"
        return [
            path(
                "send-test-event/",
                self.admin_site.admin_view(_outside_transactions(self.send_test_event_view)),
                name=f"{name}_send_test_event",
            ),
            path(
                "<path:object_id>/reprocess/",
                self.admin_site.admin_view(_outside_transactions(self.reprocess_view)),
                name=f"{name}_reprocess",
            ),
            *self._changelist_outside_transactions(super().get_urls()),
        ]

    def _changelist_outside_transactions(self, urls: list[URLPattern]) -> list[URLPattern]:
        # The reprocess action runs on the changelist's POST: exempt it too.
        changelist = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        for pattern in urls:
            if pattern.name == changelist:
                outside_atomic_requests(pattern.callback)
        return urls

    def send_test_event_view(self, request: HttpRequest) -> HttpResponse:
        """Sign a sample event and hand it to the receiver in-process, then link to it.

        Staff only (``admin_view``), with the ``send_test_event`` permission: the handlers
        really run. The page never shows the signing secret.
        """
        if not self.has_send_test_permission(request):
            raise PermissionDenied
        form = SendTestEventForm(
            request.POST if request.method == "POST" else None,
            endpoints=request_endpoint_names(request),
        )
        if request.method == "POST" and form.is_valid():
            payload = sample_event(
                form.cleaned_data["event_type"],
                case_id=form.cleaned_data["case_id"] or None,
                session_id=form.cleaned_data["session_id"] or None,
            )
            endpoint = form.chosen_endpoint
            try:
                delivery = send_test_event(payload, in_process=True, endpoint=endpoint)
            except SendingNotConfigured as exc:
                if endpoint != DEFAULT_ENDPOINT:
                    message = str(_("No test event was sent. %(reason)s") % {"reason": exc})
                else:
                    message = str(
                        _(
                            "No test event was sent: no webhook secret is configured. Set "
                            "KLAREFI_WEBHOOK_SECRET in the site's settings; real deliveries are "
                            "refused until it is set."
                        )
                    )
                self.message_user(request, message, messages.ERROR)
            else:
                self._report_delivery(request, delivery, endpoint)
                return HttpResponseRedirect(request.get_full_path())
        context = {
            **self.admin_site.each_context(request),
            "title": _("Send test event"),
            "subtitle": None,
            "opts": self.opts,
            "form": form,
            "has_view_permission": self.has_view_permission(request),
            "changelist_url": self._changelist_url(),
        }
        return TemplateResponse(request, "admin/django_klarefi/event/send_test_event.html", context)

    def _report_delivery(self, request: HttpRequest, delivery: Any, endpoint: str) -> None:
        stored = Event.objects.filter(event_id=delivery.event_id, endpoint=endpoint)
        event = stored.only("pk", "status").first()
        if event is None:
            self.message_user(
                request,
                format_html(
                    "{} {} was not stored: the receiver answered HTTP {}: {}",
                    delivery.event_type,
                    delivery.event_id,
                    delivery.status,
                    delivery.body,
                ),
                messages.ERROR,
            )
            return
        self.message_user(
            request,
            format_html(
                'Sent {} <a href="{}">{}</a>: HTTP {} in {} ms; stored as {}.',
                delivery.event_type,
                self._change_url(event.pk),
                delivery.event_id,
                delivery.status,
                round(delivery.milliseconds),
                event.get_status_display().lower(),
            ),
            messages.SUCCESS if delivery.ok else messages.WARNING,
        )

    def _changelist_url(self) -> str:
        opts = self.opts
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def _change_url(self, pk: Any) -> str:
        opts = self.opts
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk])


def _outside_transactions(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``view`` as a function exempt from ``ATOMIC_REQUESTS`` on every database.

    Processing commits the event and its failure record itself, as the receiver does; a
    request transaction around it would hold the row and roll the failure record back.
    """

    def exempt(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, *args, **kwargs)

    return outside_atomic_requests(exempt)


def _reprocess_message(event: Event, outcome: Outcome) -> str:
    texts = {
        Outcome.PROCESSED: _("Reprocessed {event}: processed (attempt {attempts})."),
        Outcome.FAILED: _(
            "Reprocessed {event}: failed again (attempt {attempts}); see the error below."
        ),
        # Not starting with {event}: the admin shows a message with its first letter
        # capitalised, and an event type is lower case.
        Outcome.IN_FLIGHT: _(
            "Not reprocessed: {event} is being processed elsewhere right now; try again later."
        ),
        Outcome.MISSING: _("Not reprocessed: {event} was deleted meanwhile."),
        ERASED_OUTCOME: _(
            "Not reprocessed: the payload data of {event} was erased, so it is never run again."
        ),
    }
    text = texts.get(outcome, _("Reprocessed {event}: {outcome}."))
    return str(text).format(event=event, attempts=event.attempts, outcome=outcome)
