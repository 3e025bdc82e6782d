from __future__ import annotations

from django.apps import AppConfig


class RaceAppConfig(AppConfig):
    name = "tests.raceapp"
    label = "raceapp"

    def ready(self) -> None:
        from django_klarefi.signals import event_received
        from tests.raceapp.handlers import race_handler

        event_received.connect(race_handler, dispatch_uid="tests-raceapp")
