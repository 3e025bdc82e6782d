"""The Klarefi receiver as a DRF view, for an endpoint inside your API's URL space."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from rest_framework.exceptions import APIException
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from django_klarefi import views
from django_klarefi.contrib.rest_framework.schema import load_schema_extensions
from django_klarefi.endpoints import DEFAULT_ENDPOINT
from django_klarefi.rejections import report_rejection

__all__ = ["KlarefiWebhookAPIView"]


class FirstRendererNegotiation(BaseContentNegotiation):
    """Answer with the view's first renderer whatever the ``Accept`` header says, as the
    plain receiver does (Klarefi's sender is not a browser)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class KlarefiWebhookAPIView(APIView):
    """Receive Klarefi deliveries exactly as the plain view (``django_klarefi.urls``) does.

    A POST goes through :func:`django_klarefi.views.handle_delivery`: the same bounded
    read, verification, processing, status codes, JSON bodies and dedupe. Other methods
    get the plain view's answers (405, or 200 to ``OPTIONS``). What DRF adds is its
    per-view machinery, throttling above all: set ``throttle_classes`` in a subclass.
    A delivery DRF itself refuses (429 ``throttled``, say) is reported as the receiver
    reports its own rejections (:func:`django_klarefi.rejections.report_rejection`).

    No authentication class runs: the signature is the authentication, and it is checked
    with the body by the receiver itself. So there is no session, and no CSRF check.

    It receives for the ``default`` endpoint, or for the one named by the URL's
    ``endpoint`` keyword argument, or by :attr:`endpoint`::

        path("api/klarefi/eu", KlarefiWebhookAPIView.as_view(endpoint="eu")),
        path("api/klarefi/<slug:endpoint>", KlarefiWebhookAPIView.as_view()),
    """

    #: The endpoint it receives for, unless the URL names one.
    endpoint = DEFAULT_ENDPOINT

    #: Marks a routed Klarefi receiver for django-klarefi's system checks.
    klarefi_receiver = True
    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FirstRendererNegotiation

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return views.outside_atomic_requests(super().as_view(**initkwargs))

    def handle_exception(self, exc: Exception) -> Any:
        """DRF's answer to ``exc`` (or its re-raise), reported as a rejection when DRF
        refused the delivery before the receiver saw it."""
        response = super().handle_exception(exc)
        if isinstance(exc, APIException):
            codes = exc.get_codes()
            report_rejection(
                client=str(self.request.META.get("REMOTE_ADDR") or "unknown"),
                status=response.status_code,
                reason=codes if isinstance(codes, str) else exc.default_code,
                detail=str(exc.detail),
                sender=type(self),
                # The view's own endpoint; never a name taken unchecked from the URL.
                endpoint=None if "endpoint" in self.kwargs else self.endpoint,
                path=self.request.path,
            )
        return response

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        name = kwargs.get("endpoint", self.endpoint)
        return views.handle_delivery(request._request, endpoint=name)

    # DRF passes any HttpResponse through; the stubs ask for its own Response.
    def options(  # type: ignore[override]
        self, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return views.webhook(request._request)

    def http_method_not_allowed(  # type: ignore[override]
        self, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return views.webhook(request._request)


load_schema_extensions()
