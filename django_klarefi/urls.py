"""The receiver's URLconf. Include it without a trailing slash::

    path("webhooks/klarefi", include("django_klarefi.urls")),

It then answers at ``/webhooks/klarefi``, the form Klarefi's dashboard shows, and at
``/webhooks/klarefi/``, and ``reverse("django_klarefi:webhook")`` gives the first. An
include with the trailing slash still works for ``/webhooks/klarefi/`` only; check
``django_klarefi.W003`` reports it.

The same include serves every named endpoint (:mod:`django_klarefi.endpoints`) at
``/webhooks/klarefi/<name>``, with or without a trailing slash:
``reverse("django_klarefi:webhook", kwargs={"endpoint": "eu"})`` gives
``/webhooks/klarefi/eu``. The view gets the name as its ``endpoint`` argument (``default``
at the root).
"""

from __future__ import annotations

from django.urls import path, re_path

from django_klarefi import views
from django_klarefi.endpoint_settings import ENDPOINT_NAME_PATTERN

app_name = "django_klarefi"

urlpatterns = [
    path("", views.webhook, name="webhook"),
    # The same receiver after a trailing slash. A regex beginning with \A rather than
    # "^/": Django's urls.W002 warns of a route that begins with a slash, which here is
    # the point. Never reversed: the name above is the documented form.
    re_path(r"\A/\Z", views.webhook),
    # A named endpoint, reversed without the trailing slash (the optional "/?" reverses
    # to nothing). "[/]" rather than "/" for urls.W002 again; \A cannot be reversed.
    re_path(rf"^[/](?P<endpoint>{ENDPOINT_NAME_PATTERN})/?\Z", views.webhook, name="webhook"),
]
