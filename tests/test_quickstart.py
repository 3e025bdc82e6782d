"""The README's four-line setup, in a fresh project with nothing else configured."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# The setup lines, exactly as the README shows them.
SETUP_LINES = [
    'INSTALLED_APPS = [..., "django_klarefi"]',
    'path("webhooks/klarefi/", include("django_klarefi.urls")),',
    'KLAREFI_WEBHOOK_SECRET = os.environ["KLAREFI_WEBHOOK_SECRET"]',
    "python manage.py migrate",
]


def test_readme_shows_the_setup_lines():
    for line in SETUP_LINES:
        assert line in README


def test_four_line_setup_receives_an_event(tmp_path):
    (tmp_path / "fresh_settings.py").write_text(
        textwrap.dedent(f"""
        import os
        SECRET_KEY = "fresh"
        USE_TZ = True
        ROOT_URLCONF = "fresh_urls"
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}
        INSTALLED_APPS = ["django_klarefi"]
        KLAREFI_WEBHOOK_SECRET = os.environ["KLAREFI_WEBHOOK_SECRET"]
    """)
    )
    (tmp_path / "fresh_urls.py").write_text(
        textwrap.dedent("""
        from django.urls import include, path
        urlpatterns = [
            path("webhooks/klarefi/", include("django_klarefi.urls")),
        ]
    """)
    )
    script = textwrap.dedent("""
        import django, json
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        call_command("check", fail_level="WARNING")
        from django.dispatch import receiver
        from django.test import Client
        from django_klarefi import sign_webhook_payload
        from django_klarefi.models import Event
        from django_klarefi.signals import case_completed
        seen = []
        case_completed.connect(lambda sender, event, **kw: seen.append(event.case_id), weak=False)
        body = json.dumps({"event": "case.completed", "case_id": "case_1"}).encode()
        response = Client().post("/webhooks/klarefi/", body, content_type="application/json",
                                 headers={"X-Klarefi-Signature": sign_webhook_payload(body, "whsec_fresh")})
        print(response.status_code, Event.objects.get().status, seen)
    """)
    env = {
        "DJANGO_SETTINGS_MODULE": "fresh_settings",
        "PYTHONPATH": str(tmp_path),
        "KLAREFI_WEBHOOK_SECRET": "whsec_fresh",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "200 processed ['case_1']"
