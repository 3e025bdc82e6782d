"""The DRF integration without drf-spectacular: nothing imports it, and everything works."""

from __future__ import annotations

import pytest

from tests.test_drf_absent import run_python

pytestmark = pytest.mark.slow


def test_drf_integration_works_without_drf_spectacular(tmp_path):
    outcome = run_python(
        """
        import json, sys, django
        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client, override_settings
        from django_klarefi.testing import post_event

        call_command("migrate", verbosity=0)
        with override_settings(
            ROOT_URLCONF="tests.urls_drf",
            KLAREFI_API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"],
        ):
            client = Client()
            client.force_login(User.objects.create_superuser("reader", password="unused"))
            answers = [
                post_event(client, "case.completed", url="/api/klarefi/webhook/").status_code,
                post_event(client, "case.completed", url="/api/signed/").status_code,
                client.get("/api/klarefi/events/").status_code,
            ]
        print(json.dumps({
            "answers": answers,
            "spectacular": [name for name in sys.modules if name.startswith("drf_spectacular")],
        }))
        """,
        blocked=("drf_spectacular",),
        tmp_path=tmp_path,
    )
    assert outcome == {"answers": [200, 201, 200], "spectacular": []}
