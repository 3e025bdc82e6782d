from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KlarefiConfig(AppConfig):
    name = "django_klarefi"
    verbose_name = _("Klarefi")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules registers their system checks.
        # endpoints: its cache follows the saves of Endpoint rows.
        from django_klarefi import (  # noqa: F401
            api_checks,
            checks,
            endpoint_checks,
            endpoints,
            url_checks,
        )
