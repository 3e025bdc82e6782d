"""Race settings in task mode, on django-tasks-db's DatabaseBackend (``db_worker``)."""

from __future__ import annotations

import django

from tests.settings_races import *  # noqa: F403
from tests.settings_races import INSTALLED_APPS

# django.tasks on Django 6.0+, the django-tasks backport (an app of its own) on 5.2.
FRAMEWORK_APPS = [] if django.VERSION >= (6, 0) else ["django_tasks"]

INSTALLED_APPS = [*INSTALLED_APPS, *FRAMEWORK_APPS, "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
KLAREFI_PROCESSING = "task"
