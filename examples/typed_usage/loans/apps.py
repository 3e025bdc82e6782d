from __future__ import annotations

from django.apps import AppConfig


class LoansConfig(AppConfig):
    name = "loans"

    def ready(self) -> None:
        from loans import receivers  # noqa: F401  (connects the receivers)
