"""Django REST framework integration (``pip install "django-klarefi[drf]"``).

* :class:`~.authentication.KlarefiSignatureAuthentication` and
  :class:`~.permissions.HasKlarefiSignature`: accept Klarefi-signed requests in your own
  DRF views.
* :class:`~.receiver.KlarefiWebhookAPIView`: the receiver as a DRF view, inside your API's
  URL space and throttling.
* ``include("django_klarefi.contrib.rest_framework.urls")``: browse and reprocess events
  (:class:`~.viewsets.EventViewSet`).

The names are importable from this package; the models behind the views load only when
one of those is used, so importing the authentication class from settings is safe.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

try:
    import rest_framework  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in the environment without DRF
    raise ImproperlyConfigured(
        "django_klarefi.contrib.rest_framework needs Django REST framework: "
        'pip install "django-klarefi[drf]"'
    ) from exc

if TYPE_CHECKING:
    from django_klarefi.contrib.rest_framework.authentication import (
        KlarefiSignatureAuthentication,
    )
    from django_klarefi.contrib.rest_framework.permissions import (
        HasErasePermission,
        HasKlarefiSignature,
        HasReprocessPermission,
        HasViewEventPermission,
    )
    from django_klarefi.contrib.rest_framework.receiver import KlarefiWebhookAPIView
    from django_klarefi.contrib.rest_framework.serializers import EventSerializer
    from django_klarefi.contrib.rest_framework.viewsets import EventViewSet

__all__ = [
    "EventSerializer",
    "EventViewSet",
    "HasErasePermission",
    "HasKlarefiSignature",
    "HasReprocessPermission",
    "HasViewEventPermission",
    "KlarefiSignatureAuthentication",
    "KlarefiWebhookAPIView",
]

_MODULES = {
    "EventSerializer": "serializers",
    "EventViewSet": "viewsets",
    "HasErasePermission": "permissions",
    "HasKlarefiSignature": "permissions",
    "HasReprocessPermission": "permissions",
    "HasViewEventPermission": "permissions",
    "KlarefiSignatureAuthentication": "authentication",
    "KlarefiWebhookAPIView": "receiver",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
