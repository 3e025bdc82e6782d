from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KlarefiConfig(AppConfig):
    name = "django_klarefi"
    verbose_name = _("Klarefi")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules registers their system checks.
        from django_klarefi import api_checks, checks, endpoint_checks, url_checks  # noqa: F401
        from django_klarefi import endpoints  # noqa: F401  (its cache follows Endpoint saves)
