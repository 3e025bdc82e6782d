"""The DRF host (tests.settings_drf) with django-klarefi's metrics view routed and a
webhook_rejected receiver that records each rejection: for the gunicorn metrics tests."""

from __future__ import annotations

from tests.settings_drf import *  # noqa: F403

ROOT_URLCONF = "tests.urls_metrics"
