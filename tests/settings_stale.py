"""Race settings for the stale-session tests (tests/test_stale_sessions.py): a short idle
bound, and either mode.

``KLAREFI_TEST_IDLE_TIMEOUT``: ``KLAREFI_IDLE_TRANSACTION_TIMEOUT`` in seconds, default 3;
``none`` leaves the attempt's transaction unbounded, to watch the break it prevents.
``KLAREFI_TEST_PROCESSING``: ``sync`` (default) or ``task`` (django-tasks-db's workers).
"""

from __future__ import annotations

import os

from tests.settings_races_tasks import *  # noqa: F403

_IDLE_TIMEOUT = os.environ.get("KLAREFI_TEST_IDLE_TIMEOUT", "3")

KLAREFI_IDLE_TRANSACTION_TIMEOUT = None if _IDLE_TIMEOUT == "none" else float(_IDLE_TIMEOUT)
KLAREFI_PROCESSING = os.environ.get("KLAREFI_TEST_PROCESSING", "sync")
