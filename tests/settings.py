"""Settings for django-klarefi's own test suite.

``KLAREFI_TEST_DB=postgres`` runs on PostgreSQL (``KLAREFI_PG_*`` variables), otherwise SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "django-klarefi-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_klarefi",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR.parent / ".artifacts" / "static"

if os.environ.get("KLAREFI_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("KLAREFI_PG_NAME", "django_klarefi"),
            "USER": os.environ.get("KLAREFI_PG_USER", "klarefi"),
            "PASSWORD": os.environ.get("KLAREFI_PG_PASSWORD", "klarefi"),
            "HOST": os.environ.get("KLAREFI_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("KLAREFI_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("KLAREFI_PG_TEST_NAME")},
            # Behind PgBouncer's transaction pooling (tests/pgbouncer.py), as Django asks.
            "DISABLE_SERVER_SIDE_CURSORS": os.environ.get("KLAREFI_PG_TRANSACTION_POOLING") == "1",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("KLAREFI_SQLITE_NAME", str(BASE_DIR / "test.sqlite3")),
            # A file, not Django's default in-memory test database, so that servers and
            # workers started by the tests (tests/servers.py) share it.
            "TEST": {
                "NAME": os.environ.get(
                    "KLAREFI_SQLITE_TEST_NAME", str(BASE_DIR / "test_klarefi.sqlite3")
                )
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

KLAREFI_WEBHOOK_SECRET = "whsec_test_secret_do_not_leak_7f3a"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_klarefi": {"handlers": ["null"], "level": "DEBUG", "propagate": True}},
}
