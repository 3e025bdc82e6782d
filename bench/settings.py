"""Settings for the benchmark (``bench/run.py`` sets ``KLAREFI_BENCH_*`` before setup).

Both views run behind the same middleware: the list ``django-admin startproject`` writes.
Connections are persistent (``CONN_MAX_AGE = None``), as behind a long-running worker,
so that neither view pays for a connect per request.
"""

from __future__ import annotations

import os

SECRET_KEY = "django-klarefi-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_klarefi",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bench.urls"

if os.environ.get("KLAREFI_BENCH_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["KLAREFI_BENCH_PG_NAME"],
            "USER": os.environ.get("KLAREFI_PG_USER", "klarefi"),
            "PASSWORD": os.environ.get("KLAREFI_PG_PASSWORD", "klarefi"),
            "HOST": os.environ.get("KLAREFI_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("KLAREFI_PG_PORT", "5432"),
            "CONN_MAX_AGE": None,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["KLAREFI_BENCH_SQLITE_PATH"],
            "CONN_MAX_AGE": None,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Only task mode (``KLAREFI_PROCESSING = "task"``, switched on per round) enqueues; the
# dummy backend keeps results in memory, and the benchmark clears them after each round.
try:
    import django.tasks  # noqa: F401  (Django 6.0+)

    _TASKS_PACKAGE = "django.tasks"
except ImportError:  # Django 5.2: the django-tasks backport
    _TASKS_PACKAGE = "django_tasks"
TASKS = {"default": {"BACKEND": f"{_TASKS_PACKAGE}.backends.dummy.DummyBackend"}}

KLAREFI_WEBHOOK_SECRET = "whsec_bench_secret_not_real"
# Issue 16: bench/http.py also measures an endpoint defined here and one in the database
# (bench/endpoint_targets.py), whose secret is encrypted with a key made for the run.
KLAREFI_ENDPOINTS = {"eu": {"SECRET": "whsec_bench_eu_not_real"}}
if os.environ.get("KLAREFI_BENCH_ENCRYPTION_KEY"):
    KLAREFI_ENCRYPTION_KEYS = [os.environ["KLAREFI_BENCH_ENCRYPTION_KEY"]]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_klarefi": {"handlers": ["null"], "propagate": False}},
}
