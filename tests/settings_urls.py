"""tests.settings, with DEBUG and the URLconf chosen by the environment, for servers that
tests/test_urls.py starts: ``KLAREFI_TEST_DEBUG=1`` and ``KLAREFI_TEST_URLCONF``."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DEBUG = os.environ.get("KLAREFI_TEST_DEBUG") == "1"
ROOT_URLCONF = os.environ.get("KLAREFI_TEST_URLCONF", "tests.urls")
APPEND_SLASH = True  # Django's default, said out loud: CommonMiddleware is in MIDDLEWARE
