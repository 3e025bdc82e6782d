"""A DRF host project: ``tests.settings`` with DRF and drf-spectacular installed, and the
strict defaults many APIs have (session authentication, ``IsAuthenticated``).

Used by the servers and commands that tests/test_drf_host.py starts.
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS as BASE_INSTALLED_APPS

INSTALLED_APPS = [*BASE_INSTALLED_APPS, "rest_framework", "drf_spectacular"]

ROOT_URLCONF = "tests.urls_drf"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-klarefi test host",
    "VERSION": "1.0.0",
}
