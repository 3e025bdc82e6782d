"""Both views under one URLconf, behind the same middleware.

The receiver is included as the docs show (no trailing slash): ``default`` at
``/webhooks/klarefi``, a named endpoint at ``/webhooks/klarefi/<name>``.
"""

from __future__ import annotations

from django.urls import include, path

from bench.baseline import baseline_webhook

urlpatterns = [
    path("baseline/", baseline_webhook, name="baseline"),
    path("webhooks/klarefi", include("django_klarefi.urls")),
]
