"""Task mode on django-tasks-db, for the gunicorn servers and ``db_worker`` processes that
tests/test_task_workers.py starts (the pytest process itself runs on tests.settings).

A named backend and queue, not the defaults, so that the workers' tests also prove that
``KLAREFI_TASK_BACKEND`` and ``KLAREFI_TASK_QUEUE`` are applied.
"""

from __future__ import annotations

import os

import django

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

# django.tasks on Django 6.0+, the django-tasks backport (an app of its own) on 5.2.
if django.VERSION >= (6, 0):
    FRAMEWORK, FRAMEWORK_APPS = "django.tasks", []
else:
    FRAMEWORK, FRAMEWORK_APPS = "django_tasks", ["django_tasks"]

INSTALLED_APPS = [*INSTALLED_APPS, *FRAMEWORK_APPS, "django_tasks_db", "tests.taskapp"]
TASKS = {
    "default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"},
    "webhooks": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["klarefi"]},
}
KLAREFI_PROCESSING = os.environ.get("KLAREFI_TEST_PROCESSING", "task")
KLAREFI_TASK_BACKEND = "webhooks"
KLAREFI_TASK_QUEUE = "klarefi"
