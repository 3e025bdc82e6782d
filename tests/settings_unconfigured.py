"""A deployment that forgot the secret: no KLAREFI_WEBHOOK_SECRET. ``KLAREFI_TEST_DEBUG=1``
turns DEBUG on, to show that not even Django's debug page is ever answered."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DEBUG = os.environ.get("KLAREFI_TEST_DEBUG") == "1"
KLAREFI_WEBHOOK_SECRET = ""
