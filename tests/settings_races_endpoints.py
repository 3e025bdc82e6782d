"""The race tests' settings with named endpoints: ``eu`` in the settings, and keys for
endpoints in the database (tests/test_endpoint_deliveries.py)."""

from __future__ import annotations

from tests.settings_races import *  # noqa: F403

EU_SECRET = "whsec_eu_secret_for_the_race_tests_2b8d"
KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
# A fixed Fernet key, for tests only.
KLAREFI_ENCRYPTION_KEYS = ["uC6cBqYWbVrUixeY0sBm8wwDa2WGHzFM2LhE1K9oW8M="]
