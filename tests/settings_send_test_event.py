"""Test settings for the servers in tests/test_send_test_event.py.

Like ``tests.settings``, with receivers connected at startup to every event signal, so a
server process records each handler call as a ``HandlerRecord`` row the test can read.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS as BASE_INSTALLED_APPS


class RecordingTestAppConfig(AppConfig):
    """``tests.testapp``, plus receivers that record each signal they get."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_klarefi.signals import EVENT_SIGNALS, event_received

        for signal in EVENT_SIGNALS.values():
            signal.connect(_record("typed"), weak=False, dispatch_uid="recording-typed")
        event_received.connect(
            _record("event_received"), weak=False, dispatch_uid="recording-catch-all"
        )


def _record(handler: str) -> Any:
    def receive(sender: Any, event: Any, **kwargs: Any) -> None:
        from tests.testapp.models import HandlerRecord

        HandlerRecord.objects.create(event_id=event.event_id, handler=handler)

    return receive


INSTALLED_APPS = [
    "tests.settings_send_test_event.RecordingTestAppConfig" if app == "tests.testapp" else app
    for app in BASE_INSTALLED_APPS
]
