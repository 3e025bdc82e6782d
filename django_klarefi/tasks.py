"""Processing on Django's Tasks framework (``KLAREFI_PROCESSING = "task"``).

:data:`process_event_task` is a thin wrapper over
:func:`django_klarefi.processing.process_event`. The framework is ``django.tasks`` on
Django 6.0+, and the ``django-tasks`` backport on Django 5.2 (``django-klarefi[tasks]``).
It imports without a Tasks framework too (the receiver imports it in every mode), and
then :data:`FRAMEWORK_MISSING` says why; check E006 reports it in task mode. The receiver
passes :func:`enqueue_processing` to processing in task mode; workers resolve the task by
its path, ``django_klarefi.tasks.process_event_task``.

Nothing here reads ``TASKS`` or creates a backend at import time. Creating a ``Task``
validates it against its backend, so the ``@task`` decorator at module level would
instantiate the default backend on import, before the project's ``TASKS`` is in use (and
fail when ``TASKS`` has no ``"default"`` alias). Instead :data:`process_event_task` is
created when it is first looked up, and each enqueue creates the task on the backend and
queue that ``KLAREFI_TASK_BACKEND`` and ``KLAREFI_TASK_QUEUE`` name at that moment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import router

try:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        task,
        task_backends,
    )
    from django.tasks.backends.immediate import ImmediateBackend
    from django.tasks.exceptions import InvalidTaskBackend
except ImportError:  # Django 5.2: the backport, if installed
    try:
        from django_tasks import (  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]
            DEFAULT_TASK_BACKEND_ALIAS,
            DEFAULT_TASK_QUEUE_NAME,
            task,
            task_backends,
        )
        from django_tasks.backends.immediate import (  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]
            ImmediateBackend,
        )
        from django_tasks.exceptions import (  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]
            InvalidTaskBackendError as InvalidTaskBackend,
        )
    except ImportError as exc:
        #: Why no Tasks framework can be used, or None when one can.
        FRAMEWORK_MISSING: str | None = str(exc)
    else:
        FRAMEWORK_MISSING = None
else:
    FRAMEWORK_MISSING = None

from django_klarefi.conf import conf
from django_klarefi.models import Event
from django_klarefi.processing import process_event

if TYPE_CHECKING:
    from django.tasks import Task

__all__ = [
    "FRAMEWORK_MISSING",
    "ImmediateBackend",
    "InvalidTaskBackend",
    "backend_alias",
    "configured_task",
    "enqueue_processing",
    "process_event_task",
    "queue_name",
    "task_backends",
]

logger = logging.getLogger("django_klarefi")

#: The event was deleted before its task ran.
MISSING = "missing"


def process_event_task(event_pk: str) -> str:
    """Run a stored event's handlers; return the outcome's name.

    ``event_pk`` is the event's primary key as a string. The outcome (status, attempts,
    error) is recorded on the row by ``process_event``, whatever the backend does with
    exceptions (ImmediateBackend swallows them): a handler failure is an outcome,
    ``"failed"``, not an exception. A task for an event that is already processed does
    nothing (``"already_processed"``), so duplicate enqueues are harmless; one for an
    event that was deleted does nothing either (``"missing"``), nor does one whose
    personal data was erased (``"erased"``). Only an error of the database itself
    propagates, and then the event stays as it was, for a redelivery or
    ``klarefi_reprocess --pending`` to pick up; and a receiver's ``SystemExit`` or
    ``KeyboardInterrupt``, once its failure is recorded, so that the worker stops as asked.
    """
    # Read from the database that processing writes to: a replica may not have the row yet.
    using = router.db_for_write(Event)
    event = Event.objects.using(using).filter(pk=event_pk).first()
    if event is None:
        logger.warning("Klarefi event pk=%s no longer exists; nothing to process.", event_pk)
        return MISSING
    return str(process_event(event).outcome)  # "missing" too, if deleted meanwhile


# The module attribute ``process_event_task`` must be the Task object, since workers import
# the task by that path. Keep the function (whose name gives the path) aside, and create
# the Task on first lookup, in ``__getattr__`` below (PEP 562).
_run_process_event = process_event_task
del process_event_task


def __getattr__(name: str) -> Task[[str], str]:
    if name == "process_event_task" and FRAMEWORK_MISSING is None:
        return configured_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_alias() -> str:
    """The ``TASKS`` alias to enqueue on: ``KLAREFI_TASK_BACKEND``, or ``"default"``."""
    return conf.TASK_BACKEND or DEFAULT_TASK_BACKEND_ALIAS


def queue_name() -> str:
    """The queue to enqueue on: ``KLAREFI_TASK_QUEUE``, or ``"default"``."""
    return conf.TASK_QUEUE or DEFAULT_TASK_QUEUE_NAME


def configured_task() -> Task[[str], str]:
    """``process_event_task`` on the backend and queue configured now.

    Raises the framework's ``InvalidTaskBackend`` (``InvalidTaskBackendError`` in the
    backport) for an unknown alias, and ``InvalidTask`` (``InvalidTaskError``) for a queue
    the backend does not accept.
    """
    # Created directly on the configured backend and queue, not on the "default" alias and
    # then moved with .using(): creating a Task validates it against its backend, and the
    # "default" alias need not exist, nor accept the configured queue.
    return task(backend=backend_alias(), queue_name=queue_name())(_run_process_event)


def enqueue_processing(event: Event) -> None:
    """Enqueue ``process_event_task`` for ``event``, with its primary key as a string.

    The receiver's ``enqueue`` in task mode: processing calls it after the event's row
    commits. Whatever the backend raises propagates (so does ``ImproperlyConfigured``
    without a Tasks framework): processing answers ``NOT_QUEUED``, the event stays pending.
    """
    if FRAMEWORK_MISSING is not None:
        raise ImproperlyConfigured(
            f'KLAREFI_PROCESSING is "task", but no Tasks framework can be imported '
            f"({FRAMEWORK_MISSING}). See the system check django_klarefi.E006."
        )
    configured_task().enqueue(str(event.pk))
