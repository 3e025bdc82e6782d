"""A task backend whose queue is down: every enqueue raises, as a broker outage would."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks.backends.dummy import DummyBackend
except ImportError:  # Django 5.2: the backport
    from django_tasks.backends.dummy import DummyBackend  # type: ignore[no-redef,assignment]


class QueueDown(ConnectionError):
    pass


class UnavailableBackend(DummyBackend):
    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        raise QueueDown("the task queue is unavailable")
