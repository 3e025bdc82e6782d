from __future__ import annotations

from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    """Connects the handlers at startup: subprocesses cannot use pytest fixtures."""

    name = "tests.taskapp"
    label = "taskapp"

    def ready(self) -> None:
        from django_klarefi.signals import EVENT_SIGNALS, event_received
        from tests.taskapp.handlers import catch_all_handler, typed_handler

        for signal in EVENT_SIGNALS.values():
            signal.connect(typed_handler, dispatch_uid="tests-taskapp-typed")
        event_received.connect(catch_all_handler, dispatch_uid="tests-taskapp-catch-all")
