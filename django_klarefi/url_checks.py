"""System checks on the URLconf: can Klarefi's deliveries reach the receiver?

Like every check of django-klarefi, they never touch the database.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import (
    NoReverseMatch,
    URLPattern,
    URLResolver,
    get_resolver,
    get_script_prefix,
    reverse,
)

from django_klarefi import views

#: The URL name of the receiver that ``django_klarefi.urls`` routes.
RECEIVER_URL_NAME = "django_klarefi:webhook"
#: A class-based receiver (the DRF view) says so with this class attribute set to True.
RECEIVER_MARKER = "klarefi_receiver"
INCLUDE_LINE = 'path("webhooks/klarefi", include("django_klarefi.urls"))'


@register(Tags.urls)
def check_receiver_url(**kwargs: Any) -> list[CheckMessage]:
    """E011: no URL reaches a receiver. W003: the receiver's URL ends with a slash."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    try:
        url = reverse(RECEIVER_URL_NAME)
    except NoReverseMatch:
        if routes_a_receiver(get_resolver().url_patterns):
            return []
        return [
            Error(
                f'The Klarefi receiver has no URL: "{RECEIVER_URL_NAME}" cannot be reversed '
                "and no URL routes a receiver view, so every delivery gets a 404.",
                hint=f"Add {INCLUDE_LINE} to the urlpatterns of ROOT_URLCONF, and register "
                "https://<your host>/webhooks/klarefi as the endpoint in Klarefi's dashboard.",
                id="django_klarefi.E011",
            )
        ]
    if url.endswith("/") and url != get_script_prefix():
        route = url.removeprefix(get_script_prefix()).rstrip("/")
        return [
            Warning(
                f"The Klarefi receiver's URL {url} ends with a slash: a delivery to "
                f"{url.rstrip('/')}, the form Klarefi's dashboard shows, is not received "
                "(a 301 redirect that Klarefi does not follow, a 404 without APPEND_SLASH, "
                "a 500 with DEBUG on).",
                hint=f'Include the receiver without the trailing slash, path("{route}", '
                'include("django_klarefi.urls")): it then accepts both forms.',
                id="django_klarefi.W003",
            )
        ]
    return []


def routes_a_receiver(patterns: Iterable[URLPattern | URLResolver]) -> bool:
    """Whether ``patterns``, or any URLconf they include, route a Klarefi receiver: the
    view of ``django_klarefi.urls`` under any name, or a class-based view whose class has
    ``klarefi_receiver = True``."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if routes_a_receiver(pattern.url_patterns):
                return True
        elif isinstance(pattern, URLPattern) and _is_receiver(pattern.callback):
            return True
    return False


def _is_receiver(view: Any) -> bool:
    view_class = getattr(view, "view_class", None)
    if getattr(view_class, RECEIVER_MARKER, False) is True:
        return True
    return inspect.unwrap(view) is inspect.unwrap(views.webhook)
