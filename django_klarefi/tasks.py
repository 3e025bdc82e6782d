"""Processing on Django's Tasks framework (``KLAREFI_PROCESSING = "task"``).

A thin wrapper over :func:`django_klarefi.processing.process_event`. ``django.tasks`` on
Django 6.0+, the ``django-tasks`` backport on Django 5.2. Imported only in task mode.
"""

from __future__ import annotations

import logging

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef,import-not-found,unused-ignore]

from django_klarefi.conf import conf
from django_klarefi.models import Event
from django_klarefi.processing import process_event

logger = logging.getLogger("django_klarefi")


@task()
def process_event_task(event_pk: str) -> str:
    """Run a stored event's handlers; return the outcome's name.

    The outcome (status, attempts, error) is recorded on the row by ``process_event``,
    whatever the backend does with exceptions. A task for an event that is already
    processed, or that was deleted, does nothing.
    """
    event = Event.objects.filter(pk=int(event_pk)).first()
    if event is None:
        logger.warning("Klarefi event pk=%s no longer exists; nothing to process.", event_pk)
        return "missing"
    return str(process_event(event).outcome)


def enqueue_processing(event: Event) -> None:
    """Enqueue ``process_event_task`` for ``event`` on the configured backend and queue."""
    options: dict[str, str] = {}
    if conf.TASK_BACKEND:
        options["backend"] = conf.TASK_BACKEND
    if conf.TASK_QUEUE:
        options["queue_name"] = conf.TASK_QUEUE
    chosen = process_event_task.using(**options) if options else process_event_task
    chosen.enqueue(str(event.pk))
