"""The admin of named endpoints: the ``Endpoint`` model's pages, and the Event admin's
endpoint column and filter (shown when more than one endpoint exists).

A stored secret is never displayed, not even encrypted: the form sets a new one, and can
keep the previous one valid for a while, so that rotation has no gap (deliveries signed
with the old secret keep being accepted until Klarefi's dashboard uses the new one).
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_klarefi import encryption
from django_klarefi.endpoint_settings import settings_endpoints
from django_klarefi.endpoints import delivery_path, endpoint_names
from django_klarefi.models import Endpoint

__all__ = ["EndpointAdmin", "EndpointFilter", "EndpointForm", "several_endpoints"]

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Endpoint]
    _ModelForm = forms.ModelForm[Endpoint]
else:  # ModelAdmin and ModelForm are generic in django-stubs only.
    _ModelAdmin = admin.ModelAdmin
    _ModelForm = forms.ModelForm

#: How long the previous secret stays valid after a new one is set, to choose from.
KEEP_PREVIOUS_CHOICES = [
    (0, _("Not at all: refuse it at once")),
    (3600, _("1 hour")),
    (6 * 3600, _("6 hours")),
    (24 * 3600, _("24 hours")),
    (7 * 24 * 3600, _("7 days")),
]
DEFAULT_KEEP_PREVIOUS = 24 * 3600

_NAMES_ATTRIBUTE = "_django_klarefi_endpoint_names"
# The request a page of EndpointAdmin is rendered for, for the absolute delivery URLs
# (a display method gets only the row). Per thread and per task, never shared.
_page_request: ContextVar[HttpRequest | None] = ContextVar("klarefi_page_request", default=None)


def request_endpoint_names(request: HttpRequest) -> list[str]:
    """:func:`~django_klarefi.endpoints.endpoint_names`, read once per request."""
    names = getattr(request, _NAMES_ATTRIBUTE, None)
    if names is None:
        names = endpoint_names()
        setattr(request, _NAMES_ATTRIBUTE, names)
    return names


def several_endpoints(request: HttpRequest) -> bool:
    """Whether more than one endpoint exists: then the Event admin shows the endpoint."""
    return len(request_endpoint_names(request)) > 1


class EndpointFilter(admin.SimpleListFilter):
    """The endpoints' names from the settings and the Endpoint table: never a DISTINCT
    over the events."""

    title = _("endpoint")
    parameter_name = "endpoint"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(name, name) for name in request_endpoint_names(request)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(endpoint=value) if value else queryset


class EndpointForm(_ModelForm):
    """Name, settings, and a new secret; never the stored one."""

    new_secret = forms.CharField(
        label=_("New signing secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_(
            "The whsec_... signing secret from Klarefi's dashboard. Leave empty to keep the "
            "current one. Stored encrypted; it is never shown again."
        ),
    )
    keep_previous_for = forms.TypedChoiceField(
        label=_("Keep the previous secret valid"),
        choices=KEEP_PREVIOUS_CHOICES,
        coerce=int,
        initial=DEFAULT_KEEP_PREVIOUS,
        required=False,
        help_text=_(
            "When a new secret is set: how long deliveries signed with the current one are "
            "still accepted."
        ),
    )

    class Meta:
        model = Endpoint
        fields = ["name", "is_active", "tolerance", "processing"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        secret = cleaned.get("new_secret") or ""
        if not self.instance.encrypted_secret and not secret:
            self.add_error("new_secret", _("Set the endpoint's signing secret."))
            return cleaned
        if secret:
            try:
                if self.instance.encrypted_secret:
                    keep = timedelta(seconds=cleaned.get("keep_previous_for") or 0)
                    self.instance.rotate_secret(secret, keep_previous_for=keep)
                else:
                    self.instance.secret = secret
            except ValueError as exc:
                self.add_error("new_secret", str(exc))
            except encryption.SecretsUnavailable as exc:
                raise ValidationError(str(exc)) from None
        return cleaned


@admin.register(Endpoint)
class EndpointAdmin(_ModelAdmin):
    """Endpoints added at run time; those of the settings are listed above the table."""

    form = EndpointForm
    list_display = ("name", "is_active", "delivery_url", "secret_state", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name",)
    readonly_fields = ("delivery_url", "secret_state", "created_at", "updated_at")
    change_list_template = "admin/django_klarefi/endpoint/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "is_active", "delivery_url"]}),
        (_("Signing secret"), {"fields": ["secret_state", "new_secret", "keep_previous_for"]}),
        (_("Verification and processing"), {"fields": ["tolerance", "processing"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> Any:
        # The name is in the URL Klarefi posts to: fixed once the endpoint exists.
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "name") if obj is not None else fields

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = _page_request.set(request)
        try:
            return _rendered(super().changeform_view(request, *args, **kwargs))
        finally:
            _page_request.reset(token)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        settings_urls = [(name, self._absolute_url(request, name)) for name in settings_endpoints()]
        context = {"settings_endpoints": settings_urls, **(extra_context or {})}
        token = _page_request.set(request)
        try:
            return _rendered(super().changelist_view(request, context))
        finally:
            _page_request.reset(token)

    @admin.display(description=_("delivery URL"))
    def delivery_url(self, endpoint: Endpoint) -> SafeString | str:
        """The URL to enter in Klarefi's dashboard, selected whole on a click."""
        if not endpoint.name:
            return "-"
        url = self._absolute_url(_page_request.get(), endpoint.name)
        return format_html('<code class="klarefi-delivery-url">{}</code>', url)

    @admin.display(description=_("secret"))
    def secret_state(self, endpoint: Endpoint) -> str:
        """Whether a secret is set, and until when the previous one is accepted; never
        the secret."""
        if not endpoint.encrypted_secret:
            return str(_("not set"))
        if endpoint.encrypted_previous_secret and endpoint.previous_valid():
            assert endpoint.previous_secret_expires_at is not None
            return str(_("set; the previous one is accepted until %(moment)s")) % {
                "moment": endpoint.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M %Z")
            }
        return str(_("set"))

    @staticmethod
    def _absolute_url(request: HttpRequest | None, name: str) -> str:
        try:
            path = delivery_path(name)
        except NoReverseMatch:
            return str(_("(the receiver is not in the URLconf)"))
        return request.build_absolute_uri(path) if request is not None else path


def _rendered(response: HttpResponse) -> HttpResponse:
    # A TemplateResponse renders later, after the request is no longer set: render now.
    render = getattr(response, "render", None)
    if render is not None and not getattr(response, "is_rendered", True):
        render()
    return response
