"""The README's quickstart, pasted as it is into a project made by ``django-admin startproject``.

The settings and URL lines are taken from the README's quickstart block, not retyped here,
so an edit to the README that breaks them fails this test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECRET = "whsec_quickstart"

pytestmark = pytest.mark.slow


def quickstart_block() -> str:
    """The first ``python`` block of the README's quick start: settings.py, then urls.py."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the quick start has no python block"
    return match[1]


def split_files(block: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    current = None
    for line in block.splitlines():
        if re.fullmatch(r"# (settings|urls)\.py", line.strip()):
            current = line.strip()[2:]
            files[current] = []
        elif current and line.strip():
            files[current].append(line)
    assert set(files) == {"settings.py", "urls.py"}, files
    return files


def paste_settings(settings: str, lines: list[str]) -> str:
    """What a user does with each line: the app goes into INSTALLED_APPS (the README writes
    ``[..., "django_klarefi"]``), every other line is pasted at the end as it is."""
    pasted = []
    for line in lines:
        app = re.fullmatch(r'INSTALLED_APPS = \[\.\.\., "(\w+)"\]', line)
        if app:
            settings = settings.replace(
                "INSTALLED_APPS = [\n", f'INSTALLED_APPS = [\n    "{app[1]}",\n', 1
            )
        else:
            pasted.append(line)
    return settings + "\n" + "\n".join(pasted) + "\n"


def paste_urls(urls: str, lines: list[str]) -> str:
    """The import replaces startproject's; the pattern goes into ``urlpatterns``."""
    for line in lines:
        if line.startswith("from django.urls import"):
            urls = re.sub(r"^from django\.urls import .*$", line, urls, count=1, flags=re.M)
            continue
        patterns = re.fullmatch(r"urlpatterns = \[\.\.\., (.*)\]", line)
        assert patterns, f"unexpected urls.py line in the README: {line!r}"
        urls = urls.replace("urlpatterns = [\n", f"urlpatterns = [\n    {patterns[1]},\n", 1)
    return urls


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh ``startproject`` with the README's quickstart lines pasted in."""
    base = tmp_path_factory.mktemp("quickstart")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(base)],
        check=True,
        capture_output=True,
        env=_env(),
    )
    files = split_files(quickstart_block())
    settings_path = base / "mysite" / "settings.py"
    settings_path.write_text(paste_settings(settings_path.read_text(), files["settings.py"]))
    urls_path = base / "mysite" / "urls.py"
    urls_path.write_text(paste_urls(urls_path.read_text(), files["urls.py"]))
    return base


def _env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KLAREFI_", "DJANGO_"))
    }
    return {**env, **extra}


def manage(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_shows_the_quickstart_lines():
    block = quickstart_block()
    assert "import os" in block
    assert 'KLAREFI_WEBHOOK_SECRET = os.environ.get("KLAREFI_WEBHOOK_SECRET", "")' in block
    assert 'path("webhooks/klarefi", include("django_klarefi.urls"))' in block
    assert "python manage.py migrate" in README


def test_without_the_secret_check_warns_and_check_deploy_fails(project):
    result = manage(project, "check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "(django_klarefi.W005) KLAREFI_WEBHOOK_SECRET is not set" in output
    result = manage(project, "check", "--deploy")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "(django_klarefi.E001) KLAREFI_WEBHOOK_SECRET is not set" in output


def test_without_the_secret_migrate_runs_and_says_so(project):
    # The README's first command, before the secret is set: the usual state on a
    # developer's machine and in CI.
    result = manage(project, "migrate", "--noinput")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "(django_klarefi.W005)" in output
    assert "Applying django_klarefi.0001" in output or "No migrations to apply" in output


def test_with_the_secret_the_project_receives_events_at_both_urls(project):
    assert manage(project, "migrate", "--noinput", KLAREFI_WEBHOOK_SECRET=SECRET).returncode == 0
    result = manage(project, "check", "--fail-level", "WARNING", KLAREFI_WEBHOOK_SECRET=SECRET)
    assert result.returncode == 0, result.stdout + result.stderr
    script = textwrap.dedent(f"""
        import json
        from django.test import Client
        from django_klarefi import sign_webhook_payload
        from django_klarefi.models import Event
        for number, path in enumerate(["/webhooks/klarefi", "/webhooks/klarefi/"]):
            body = json.dumps({{"id": f"evt_{{number}}", "event": "case.completed"}}).encode()
            header = sign_webhook_payload(body, {SECRET!r})
            response = Client(HTTP_HOST="localhost").post(path, body, content_type="application/json",
                                     headers={{"X-Klarefi-Signature": header}})
            print(json.dumps([path, response.status_code, response["Content-Type"]]))
        print(json.dumps(sorted(Event.objects.values_list("event_id", "status"))))
    """)
    result = manage(project, "shell", "-c", script, KLAREFI_WEBHOOK_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
    assert lines[:2] == [
        ["/webhooks/klarefi", 200, "application/json"],
        ["/webhooks/klarefi/", 200, "application/json"],
    ]
    assert lines[2] == [["evt_0", "processed"], ["evt_1", "processed"]]
