"""Race settings in task mode, on django-tasks-db's DatabaseBackend (``db_worker``)."""

from __future__ import annotations

from tests.settings_races import *  # noqa: F403
from tests.settings_races import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks", "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
KLAREFI_PROCESSING = "task"
