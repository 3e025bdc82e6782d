"""Task mode on django-tasks-rq: RQ workers and a Redis server that the tests start.

For the gunicorn servers and ``rqworker`` processes of tests/test_task_workers_rq.py (the
pytest process itself runs on tests.settings). The Redis server's URL comes from
``KLAREFI_TEST_REDIS_URL``, since each run starts its own server on a free port.

django-tasks-rq builds on the django-tasks backport, whichever Django runs it: its
backend subclasses ``django_tasks.backends.base.BaseTaskBackend``, and its worker accepts a
task of either framework. On Django 6.0+, django-klarefi creates the task with
``django.tasks`` (built in), which loads this backend from ``TASKS`` like any other.
"""

from __future__ import annotations

import os

import django

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

if django.VERSION >= (6, 0):
    FRAMEWORK, FRAMEWORK_APPS = "django.tasks", []
else:
    FRAMEWORK, FRAMEWORK_APPS = "django_tasks", ["django_tasks"]

INSTALLED_APPS = [*INSTALLED_APPS, *FRAMEWORK_APPS, "django_rq", "tests.taskapp"]
REDIS_URL = os.environ.get("KLAREFI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {"klarefi": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300}}
TASKS = {
    "default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"},
    "webhooks": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["klarefi"]},
}
KLAREFI_PROCESSING = "task"
KLAREFI_TASK_BACKEND = "webhooks"
KLAREFI_TASK_QUEUE = "klarefi"
